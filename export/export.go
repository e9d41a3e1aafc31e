// Package export ships entries of the trail out as ZIP archives: one per
// month the filter covers, each with the entries (JSON lines or CSV) and a
// manifest (the filter, the rows, the SHA-256 of each file, the newest
// signed checkpoint of the integrity log), read in one snapshot, to a
// directory or S3-compatible storage. An export is resumable: run again
// under its id, it skips the archives already stored whole.
package export

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/query"
)

// Request is one export.
type Request struct {
	ID     string // names its folder: letters, digits, - _ . only
	Filter query.Filter
	Format string // jsonl or csv
}

// Shard is one archive of an export.
type Shard struct {
	Key     string `json:"key"`
	Month   string `json:"month"` // YYYY-MM
	Entries int64  `json:"entries"`
	FirstID int64  `json:"first_id"`
	LastID  int64  `json:"last_id"`
	Bytes   int64  `json:"bytes"`  // of the archive (0 when it was stored already)
	SHA256  string `json:"sha256"` // of the archive
	Resumed bool   `json:"resumed,omitempty"`
}

// Result is what an export stored.
type Result struct {
	ID       string  `json:"export_id"`
	Entries  int64   `json:"entries"`
	Bytes    int64   `json:"bytes"`
	Shards   []Shard `json:"shards"`
	Manifest string  `json:"manifest"` // the key of the export's manifest
}

// validID is what an export id may be.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// CheckID reports what is wrong with an export id.
func CheckID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("export id %q: letters, digits, '.', '-' and '_', at most 100, not starting with a punctuation mark", id)
	}
	return nil
}

// manifest is what each archive, and the export, says of itself.
type manifest struct {
	ExportID   string         `json:"export_id"`
	Format     string         `json:"format"`
	Filter     query.Filter   `json:"filter"`
	Since      time.Time      `json:"since"`
	Until      time.Time      `json:"until"`
	Entries    int64          `json:"entries"`
	FirstID    int64          `json:"first_id,omitempty"`
	LastID     int64          `json:"last_id,omitempty"`
	Files      []manifestFile `json:"files,omitempty"`  // in an archive
	Shards     []Shard        `json:"shards,omitempty"` // of the export
	Checkpoint string         `json:"checkpoint,omitempty"`
	Created    time.Time      `json:"created_at"`
}

type manifestFile struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Run exports the entries req selects from the trail in schema (an SQL
// identifier, quoted) to dest, in one snapshot of conn. progress is told
// of each entry written (nil: nobody).
func Run(ctx context.Context, conn *pgx.Conn, schema string, dest Destination, req Request, progress func()) (*Result, error) {
	if err := CheckID(req.ID); err != nil {
		return nil, err
	}
	if err := req.Filter.Check(); err != nil {
		return nil, err
	}
	if req.Format != "jsonl" && req.Format != "csv" {
		return nil, fmt.Errorf("format %q: jsonl or csv", req.Format)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	checkpoint, err := newestCheckpoint(ctx, tx, schema)
	if err != nil {
		return nil, err
	}
	res := &Result{ID: req.ID, Manifest: req.ID + "/manifest.json"}
	created := time.Now().UTC()
	for from := monthStart(req.Filter.Since); from.Before(req.Filter.Until); from = from.AddDate(0, 1, 0) {
		f := req.Filter
		f.Since, f.Until = maxTime(f.Since, from), minTime(f.Until, from.AddDate(0, 1, 0))
		where, args := f.Where("e")
		var n int64
		var first, last *int64
		if err := tx.QueryRow(ctx, `SELECT count(*), min(e.id), max(e.id) FROM `+schema+`.entries e WHERE `+where, args...).Scan(&n, &first, &last); err != nil {
			return nil, fmt.Errorf("export: count the entries of %s: %w", from.Format("2006-01"), err)
		}
		if n == 0 {
			continue
		}
		sh := Shard{Key: req.ID + "/" + from.Format("2006-01") + ".zip", Month: from.Format("2006-01"), Entries: n, FirstID: *first, LastID: *last}
		sha, stored, err := dest.Stored(ctx, sh.Key)
		if err != nil {
			return nil, err
		}
		if stored {
			sh.SHA256, sh.Resumed = sha, true
		} else {
			m := manifest{ExportID: req.ID, Format: req.Format, Filter: req.Filter, Since: f.Since, Until: f.Until,
				Entries: n, FirstID: sh.FirstID, LastID: sh.LastID, Checkpoint: checkpoint, Created: created}
			if sh.Bytes, sh.SHA256, err = putArchive(ctx, tx, schema, dest, sh.Key, f, m, progress); err != nil {
				return nil, err
			}
		}
		res.Shards = append(res.Shards, sh)
		res.Entries += sh.Entries
		res.Bytes += sh.Bytes
	}
	top := manifest{ExportID: req.ID, Format: req.Format, Filter: req.Filter, Since: req.Filter.Since, Until: req.Filter.Until,
		Entries: res.Entries, Shards: res.Shards, Checkpoint: checkpoint, Created: created}
	text, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(text)
	if _, err := dest.Put(ctx, res.Manifest, bytes.NewReader(text)); err != nil {
		return nil, err
	}
	if err := dest.PutHash(ctx, res.Manifest, hex.EncodeToString(h[:])); err != nil {
		return nil, err
	}
	return res, tx.Commit(ctx)
}

// putArchive writes the archive of the entries f selects to dest at key:
// the entries, then the manifest m completed with their file's size and
// hash; then its sidecar. It returns the archive's size and SHA-256.
func putArchive(ctx context.Context, tx pgx.Tx, schema string, dest Destination, key string, f query.Filter, m manifest, progress func()) (int64, string, error) {
	pr, pw := io.Pipe()
	archiveHash := sha256.New()
	made := make(chan error, 1)
	go func() {
		err := writeArchive(ctx, tx, schema, io.MultiWriter(pw, archiveHash), f, m, progress)
		pw.CloseWithError(err)
		made <- err
	}()
	n, putErr := dest.Put(ctx, key, pr)
	pr.CloseWithError(errors.New("the upload stopped")) // the writer, if still writing, stops
	madeErr := <-made
	if putErr != nil {
		return 0, "", putErr
	}
	if madeErr != nil {
		return 0, "", fmt.Errorf("export %s: %w", key, madeErr)
	}
	sha := hex.EncodeToString(archiveHash.Sum(nil))
	if err := dest.PutHash(ctx, key, sha); err != nil {
		return 0, "", err
	}
	return n, sha, nil
}

// writeArchive writes the ZIP archive of the entries f selects to w.
func writeArchive(ctx context.Context, tx pgx.Tx, schema string, w io.Writer, f query.Filter, m manifest, progress func()) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	zw := zip.NewWriter(bw)
	name := "entries." + m.Format
	// Archives of the same entries are the same bytes: dated by the month.
	modified := monthStart(m.Since)
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: modified})
	if err != nil {
		return err
	}
	fileHash := sha256.New()
	counted := &counter{w: io.MultiWriter(fw, fileHash)}
	var rows int64
	if m.Format == "csv" {
		rows, err = query.WriteCSV(ctx, tx, schema, f, counted, progress)
	} else {
		rows, err = query.WriteJSON(ctx, tx, schema, f, counted, progress)
	}
	if err != nil {
		return err
	}
	if rows != m.Entries {
		return fmt.Errorf("%d entries written, %d counted in the same snapshot", rows, m.Entries)
	}
	m.Files = []manifestFile{{Name: name, Bytes: counted.n, SHA256: hex.EncodeToString(fileHash.Sum(nil))}}
	text, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	mw, err := zw.CreateHeader(&zip.FileHeader{Name: "manifest.json", Method: zip.Deflate, Modified: modified})
	if err != nil {
		return err
	}
	if _, err := mw.Write(text); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// newestCheckpoint is the newest signed checkpoint of the integrity log
// ("" when there is none).
func newestCheckpoint(ctx context.Context, tx pgx.Tx, schema string) (string, error) {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, schema+".integrity_checkpoints").Scan(&exists); err != nil || !exists {
		return "", err
	}
	var note string
	err := tx.QueryRow(ctx, `SELECT note FROM `+schema+`.integrity_checkpoints ORDER BY tree_size DESC LIMIT 1`).Scan(&note)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return note, err
}

// counter counts the bytes written through it.
type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
