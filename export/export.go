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
	if err := sameExport(ctx, dest, res.Manifest, req); err != nil {
		return nil, err
	}
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
		m := manifest{ExportID: req.ID, Format: req.Format, Filter: req.Filter, Since: f.Since, Until: f.Until,
			Entries: n, FirstID: sh.FirstID, LastID: sh.LastID, Checkpoint: checkpoint, Created: created}
		sha, size, stored, err := dest.Stored(ctx, sh.Key)
		if err != nil {
			return nil, err
		}
		same := false
		if stored {
			if same, err = sameArchive(ctx, dest, sh.Key, m); err != nil {
				return nil, err
			}
		}
		if same {
			sh.SHA256, sh.Bytes, sh.Resumed = sha, size, true
		} else if sh.Bytes, sh.SHA256, err = putArchive(ctx, tx, schema, dest, sh.Key, f, m, progress); err != nil {
			// (An archive stored whole but of other entries — some came
			// in since — is written again.)
			return nil, err
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

// sameExport refuses to write export req where an export of that id with
// another format or filter was stored.
func sameExport(ctx context.Context, dest Destination, key string, req Request) error {
	if _, _, ok, err := dest.Stored(ctx, key); err != nil || !ok {
		return err
	}
	rc, err := dest.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	var stored manifest
	if err := json.NewDecoder(io.LimitReader(rc, 64<<20)).Decode(&stored); err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	want, _ := json.Marshal(req.Filter)
	got, _ := json.Marshal(stored.Filter)
	if stored.ExportID != req.ID || stored.Format != req.Format || string(got) != string(want) {
		return fmt.Errorf("%s is %s's manifest, of another format or filter: give this export another id", key, stored.ExportID)
	}
	return nil
}

// sameArchive reports whether the archive stored at key is the one m
// describes: its manifest names the same export, format, filter, window,
// entries and id range. One of another export is an error.
func sameArchive(ctx context.Context, dest Destination, key string, m manifest) (bool, error) {
	r, size, closer, err := dest.ReadAt(ctx, key)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	defer closer.Close()
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return false, nil // not a whole archive: written again
	}
	var stored manifest
	for _, f := range zr.File {
		if f.Name != "manifest.json" {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return false, nil
		}
		err = json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&stored)
		rc.Close()
		if err != nil {
			return false, nil
		}
	}
	want, _ := json.Marshal(m.Filter)
	got, _ := json.Marshal(stored.Filter)
	if stored.ExportID != m.ExportID || stored.Format != m.Format || string(got) != string(want) {
		return false, fmt.Errorf("%s holds an archive of another export (%s, %s): give this one another id", key, stored.ExportID, stored.Format)
	}
	return stored.Since.Equal(m.Since) && stored.Until.Equal(m.Until) && stored.Entries == m.Entries &&
		stored.FirstID == m.FirstID && stored.LastID == m.LastID, nil
}

// putArchive writes the archive of the entries f selects to dest at key:
// the entries, then the manifest m completed with their file's size and
// hash; then its sidecar. It returns the archive's size and SHA-256.
func putArchive(ctx context.Context, tx pgx.Tx, schema string, dest Destination, key string, f query.Filter, m manifest, progress func()) (int64, string, error) {
	pr, pw := io.Pipe()
	archiveHash := sha256.New()
	produced := &counter{w: io.MultiWriter(pw, archiveHash)}
	made := make(chan error, 1)
	readCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		err := writeArchive(readCtx, tx, schema, produced, f, m, progress)
		pw.CloseWithError(err)
		made <- err
	}()
	n, putErr := dest.Put(ctx, key, pr)
	if putErr != nil {
		stop() // the reading stops now, not at the month's end
	}
	pr.CloseWithError(errors.New("the upload stopped")) // the writer, if still writing, stops
	madeErr := <-made
	if putErr != nil {
		return 0, "", putErr
	}
	if madeErr != nil {
		return 0, "", fmt.Errorf("export %s: %w", key, madeErr)
	}
	if n != produced.n {
		return 0, "", fmt.Errorf("export %s: %d bytes stored of %d written", key, n, produced.n)
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
	// The files are dated by their month, not by when they were written.
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
