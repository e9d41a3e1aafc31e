// Package browse answers the questions people ask of the trail — the
// entries a filter selects, one entry, the history of a row, what a
// transaction or a request changed, what an actor did, a summary — one
// page at a time, newest first, with keyset pagination on id. It only
// reads: the API and the web UI are built on it.
package browse

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/query"
)

// Querier runs a query: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Store reads the trail in one schema.
type Store struct {
	db     Querier
	schema string // quoted
}

// New is a store of the trail in schema (unquoted), read through db.
func New(db Querier, schema string) *Store {
	return &Store{db: db, schema: pgx.Identifier{schema}.Sanitize()}
}

// MaxLimit is the most entries a page holds; DefaultLimit when none is asked.
const (
	MaxLimit     = 500
	DefaultLimit = 50
)

// ErrNotFound: no entry has that id (or none is left: retention removes
// entries).
var ErrNotFound = errors.New("no such entry")

// ErrCursor: a cursor that this server did not give.
var ErrCursor = errors.New("the cursor is not one this server gave: start from the first page (no cursor)")

// Page is one page of entries, newest first.
type Page struct {
	Entries []Entry
	// Next is the cursor of the next page ("" when HasMore is false).
	Next    string
	HasMore bool
}

// Cursor is the opaque form of "entries before this id".
func Cursor(beforeID int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1:" + strconv.FormatInt(beforeID, 10)))
}

// ParseCursor is the id a cursor stands for (0 for no cursor).
func ParseCursor(c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, ErrCursor
	}
	rest, ok := strings.CutPrefix(string(b), "v1:")
	if !ok {
		return 0, ErrCursor
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || id <= 0 {
		return 0, ErrCursor
	}
	return id, nil
}

func clampLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultLimit
	case limit > MaxLimit:
		return MaxLimit
	}
	return limit
}

// List is a page of the entries f selects, newest first: f.BeforeID is
// where the page starts (0: the newest), limit how many at most (0: the
// default, at most MaxLimit).
func (s *Store) List(ctx context.Context, f query.Filter, limit int) (Page, error) {
	if err := f.Check(); err != nil {
		return Page{}, err
	}
	limit = clampLimit(limit)
	where, args := f.Where("e")
	sql := `SELECT ` + entryColumns + ` FROM ` + s.schema + `.entries e WHERE ` + where +
		` ORDER BY e.id DESC LIMIT ` + strconv.Itoa(limit+1)
	entries, err := s.collect(ctx, sql, args...)
	if err != nil {
		return Page{}, fmt.Errorf("list entries: %w", err)
	}
	return page(entries, limit), nil
}

func page(entries []Entry, limit int) Page {
	p := Page{Entries: entries}
	if len(entries) > limit {
		p.Entries, p.HasMore = entries[:limit], true
		p.Next = Cursor(p.Entries[limit-1].ID)
	}
	return p
}

// Entry is the entry of id.
func (s *Store) Entry(ctx context.Context, id int64) (Entry, error) {
	entries, err := s.collect(ctx, `SELECT `+entryColumns+` FROM `+s.schema+`.entries e WHERE e.id = $1`, id)
	if err != nil {
		return Entry{}, fmt.Errorf("read entry %d: %w", id, err)
	}
	if len(entries) == 0 {
		return Entry{}, ErrNotFound
	}
	return entries[0], nil
}

// Transaction is every entry of the source transaction that committed at
// lsn, in the order it made them (at most MaxLimit×10).
func (s *Store) Transaction(ctx context.Context, lsn pglogrepl.LSN) ([]Entry, error) {
	// walscribe's own entries (an alert, a purge) take the position of the
	// newest entry when they are written: they are not the transaction's.
	entries, err := s.collect(ctx, `SELECT `+entryColumns+` FROM `+s.schema+`.entries e WHERE e.commit_lsn = $1 AND e.schema_name <> 'walscribe'
		ORDER BY e.id LIMIT `+strconv.Itoa(MaxLimit*10), lsn)
	if err != nil {
		return nil, fmt.Errorf("read transaction %s: %w", lsn, err)
	}
	return entries, nil
}

func (s *Store) collect(ctx context.Context, sql string, args ...any) ([]Entry, error) {
	rows, err := s.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanEntry)
}

// Window is the filter of since..until; without since, of the days days
// (def when days is 0) before until; without until, up to now.
func Window(since, until time.Time, days, def int, now time.Time) query.Filter {
	if days <= 0 {
		days = def
	}
	f := query.Days(days, now)
	if !until.IsZero() {
		f.Until = until
		f.Since = until.Add(-time.Duration(days) * 24 * time.Hour)
	}
	if !since.IsZero() {
		f.Since = since
	}
	return f
}
