// Package auth is who may read the trail through the API and the web UI:
// bearer tokens with a role, stored in the trail's schema only as the
// SHA-256 of their secret, created and revoked by walscribe token; and
// the UI's session cookie and CSRF token derived from them.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Role is what a token may do; each role may do what the ones before it may.
type Role int

const (
	Viewer  Role = iota + 1 // read entries, history, activity, the summary; post events
	Auditor                 // + download entries, read the export history
	Admin                   // + restore and revert, list tokens
)

func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Auditor:
		return "auditor"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole is the role of that name.
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{Viewer, Auditor, Admin} {
		if s == r.String() {
			return r, nil
		}
	}
	return 0, fmt.Errorf("role %q: one of viewer, auditor, admin", s)
}

// Allows reports whether a token of role r may do what need requires.
func (r Role) Allows(need Role) bool { return r >= need }

// Token is a token as stored: never its secret.
type Token struct {
	ID        string
	Name      string
	Role      Role
	ActorID   string // the caller's own actor id ("" for none)
	CreatedAt time.Time
	CreatedBy string
	ExpiresAt time.Time // zero: until revoked
	RevokedAt time.Time // zero: not revoked
}

// Active reports whether the token may be used at now.
func (t *Token) Active(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

// Prefix starts every token, so that secret scanners recognise one.
const Prefix = "wst_"

var (
	lower  = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	format = regexp.MustCompile(`^wst_([a-z2-7]{12})_([a-z2-7]{52})$`)
)

// generate makes a token: its id, its secret and the whole text.
func generate() (id, secret, text string) {
	var b [7 + 32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	id, secret = lower.EncodeToString(b[:7])[:12], lower.EncodeToString(b[7:])
	return id, secret, Prefix + id + "_" + secret
}

// split is the id and secret of a token's text.
func split(text string) (id, secret string, ok bool) {
	m := format.FindStringSubmatch(text)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

func hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Execer runs a statement and a query: a connection, a pool or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Store keeps the tokens in the trail's schema.
type Store struct {
	db     Execer
	schema string // quoted
}

// NewStore is the token store in schema (unquoted) of db.
func NewStore(db Execer, schema string) *Store {
	return &Store{db: db, schema: pgx.Identifier{schema}.Sanitize()}
}

// ErrNoToken: no token has that id.
var ErrNoToken = errors.New("no such token")

// Create stores a new token and returns it with its text, which is shown
// once and never stored. by says who made it.
func (s *Store) Create(ctx context.Context, name string, role Role, actorID string, expires time.Time, by string) (Token, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return Token{}, "", errors.New("a token needs a name of 1 to 200 characters (--name), saying whose it is")
	}
	if role < Viewer || role > Admin {
		return Token{}, "", fmt.Errorf("role %v: one of viewer, auditor, admin", role)
	}
	id, secret, text := generate()
	t := Token{ID: id, Name: name, Role: role, ActorID: actorID, CreatedBy: by, ExpiresAt: expires}
	err := s.db.QueryRow(ctx, `INSERT INTO `+s.schema+`.api_tokens (token_id, name, role, actor_id, secret_sha256, created_by, expires_at)
		VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6, $7) RETURNING created_at`,
		id, name, role.String(), actorID, hash(secret), by, nullTime(expires)).Scan(&t.CreatedAt)
	if err != nil {
		return Token{}, "", fmt.Errorf("store the token: %w", err)
	}
	return t, text, nil
}

// Revoke revokes the token of id (its id, or its whole text); revoking
// one already revoked changes nothing.
func (s *Store) Revoke(ctx context.Context, id, by string) (Token, error) {
	if tid, _, ok := split(id); ok {
		id = tid
	}
	t, err := s.Get(ctx, id)
	if err != nil {
		return Token{}, err
	}
	if !t.RevokedAt.IsZero() {
		return t, nil
	}
	if err := s.db.QueryRow(ctx, `INSERT INTO `+s.schema+`.api_token_revocations (token_id, revoked_by) VALUES ($1, $2)
		ON CONFLICT (token_id) DO NOTHING RETURNING revoked_at`, id, by).Scan(&t.RevokedAt); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return t, nil
}

const tokenColumns = `t.token_id, t.name, t.role, coalesce(t.actor_id, ''), t.created_at, t.created_by, t.expires_at, r.revoked_at, t.secret_sha256`

func (s *Store) from() string {
	return ` FROM ` + s.schema + `.api_tokens t LEFT JOIN ` + s.schema + `.api_token_revocations r USING (token_id)`
}

func scanToken(row pgx.Row) (Token, []byte, error) {
	var t Token
	var role string
	var expires, revoked *time.Time
	var sum []byte
	if err := row.Scan(&t.ID, &t.Name, &role, &t.ActorID, &t.CreatedAt, &t.CreatedBy, &expires, &revoked, &sum); err != nil {
		return Token{}, nil, err
	}
	t.Role, _ = ParseRole(role)
	if expires != nil {
		t.ExpiresAt = *expires
	}
	if revoked != nil {
		t.RevokedAt = *revoked
	}
	return t, sum, nil
}

// Get is the token of id.
func (s *Store) Get(ctx context.Context, id string) (Token, error) {
	t, _, err := scanToken(s.db.QueryRow(ctx, `SELECT `+tokenColumns+s.from()+` WHERE t.token_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, fmt.Errorf("%w: %s (walscribe token list shows them)", ErrNoToken, id)
	}
	if err != nil {
		return Token{}, fmt.Errorf("read token %s: %w", id, err)
	}
	return t, nil
}

// List is every token, newest first.
func (s *Store) List(ctx context.Context) ([]Token, error) {
	rows, err := s.db.Query(ctx, `SELECT `+tokenColumns+s.from()+` ORDER BY t.created_at DESC, t.token_id`)
	if err != nil {
		return nil, fmt.Errorf("read the tokens: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) {
		t, _, err := scanToken(r)
		return t, err
	})
}

// ErrUnauthenticated: no token, or one that is malformed, unknown,
// revoked or expired. Which of these it was is not told to the caller.
var ErrUnauthenticated = errors.New("a valid token is required")

// dummy is compared against when a token's id is unknown, so that an
// unknown id takes as long as a wrong secret.
var dummy = hash("walscribe")

// Verify is the active token whose text this is, or ErrUnauthenticated.
// The secret's hash is compared in constant time.
func (s *Store) Verify(ctx context.Context, text string, now time.Time) (Token, error) {
	id, secret, ok := split(text)
	if !ok {
		return Token{}, ErrUnauthenticated
	}
	t, sum, err := scanToken(s.db.QueryRow(ctx, `SELECT `+tokenColumns+s.from()+` WHERE t.token_id = $1`, id))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		subtle.ConstantTimeCompare(hash(secret), dummy)
		return Token{}, ErrUnauthenticated
	case err != nil:
		return Token{}, fmt.Errorf("check the token: %w", err)
	}
	if subtle.ConstantTimeCompare(hash(secret), sum) != 1 || !t.Active(now) {
		return Token{}, ErrUnauthenticated
	}
	return t, nil
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
