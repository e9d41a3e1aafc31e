package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/query"
)

// The states of an export, in the audit schema's exports table.
const (
	Queued    = "queued"
	Running   = "running"
	Succeeded = "succeeded"
	Failed    = "failed"
)

// Record is one state of an export, as the history keeps it.
type Record struct {
	ID          string          `json:"export_id"`
	State       string          `json:"state"`
	At          time.Time       `json:"at"`
	Requester   string          `json:"requester"`
	Filter      json.RawMessage `json:"filter"`
	Destination string          `json:"destination"`
	Format      string          `json:"format"`
	Entries     *int64          `json:"entries,omitempty"`
	Bytes       *int64          `json:"bytes,omitempty"`
	Shards      json.RawMessage `json:"shards,omitempty"`
	Error       *string         `json:"error,omitempty"`
}

// Log appends a state of the export req to the history in schema (an SQL
// identifier, quoted): res for a success, fail for a failure.
func Log(ctx context.Context, conn *pgx.Conn, schema, state, requester string, req Request, dest Destination, res *Result, fail error) error {
	filter, err := json.Marshal(req.Filter)
	if err != nil {
		return err
	}
	var entries, bytes *int64
	var shards []byte
	if res != nil {
		entries, bytes = &res.Entries, &res.Bytes
		if shards, err = json.Marshal(res.Shards); err != nil {
			return err
		}
	}
	var errText *string
	if fail != nil {
		s := fail.Error()
		errText = &s
	}
	var shardsArg any
	if shards != nil {
		shardsArg = string(shards)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+schema+`.exports (export_id, state, requester, filter, destination, format, entries, bytes, shards, error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		req.ID, state, requester, string(filter), dest.String(), req.Format, entries, bytes, shardsArg, errText); err != nil {
		return fmt.Errorf("record the export %s as %s: %w", req.ID, state, err)
	}
	return nil
}

// SameRequest refuses export req to dest where the history holds an
// export of that id with another filter, format or destination.
func SameRequest(ctx context.Context, conn *pgx.Conn, schema string, req Request, dest Destination) error {
	rec, ok, err := Find(ctx, conn, schema, req.ID)
	if err != nil || !ok {
		return err
	}
	want, err := json.Marshal(req.Filter)
	if err != nil {
		return err
	}
	var recorded Request
	if err := json.Unmarshal(rec.Filter, &recorded.Filter); err != nil {
		return fmt.Errorf("export %s: its recorded filter: %w", req.ID, err)
	}
	got, _ := json.Marshal(recorded.Filter)
	if string(got) != string(want) || rec.Format != req.Format || rec.Destination != dest.String() {
		return fmt.Errorf("export %s was given another filter, format or destination (%s, %s, %s): run it again with --id %s alone, or give this export another id",
			req.ID, got, rec.Format, rec.Destination, req.ID)
	}
	return nil
}

// List returns the newest state of the newest exports (at most limit).
func List(ctx context.Context, q query.Querier, schema string, limit int) ([]Record, error) {
	rows, err := q.Query(ctx, `SELECT * FROM (SELECT DISTINCT ON (export_id) export_id, state, at, requester, filter, destination, format, entries, bytes, shards, error
		FROM `+schema+`.exports ORDER BY export_id, at DESC) newest ORDER BY at DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("read the export history: %w", err)
	}
	recs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return nil, fmt.Errorf("read the export history: %w", err)
	}
	return recs, nil
}

// Find returns the newest state of export id, and whether it is known.
func Find(ctx context.Context, conn *pgx.Conn, schema, id string) (Record, bool, error) {
	rows, err := conn.Query(ctx, `SELECT export_id, state, at, requester, filter, destination, format, entries, bytes, shards, error
		FROM `+schema+`.exports WHERE export_id = $1 ORDER BY at DESC LIMIT 1`, id)
	if err != nil {
		return Record{}, false, fmt.Errorf("read the export history: %w", err)
	}
	rec, err := pgx.CollectOneRow(rows, scanRecord)
	if errors.Is(err, pgx.ErrNoRows) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("read the export history: %w", err)
	}
	return rec, true, nil
}

func scanRecord(r pgx.CollectableRow) (Record, error) {
	var rec Record
	var filter, shards []byte
	err := r.Scan(&rec.ID, &rec.State, &rec.At, &rec.Requester, &filter, &rec.Destination, &rec.Format, &rec.Entries, &rec.Bytes, &shards, &rec.Error)
	rec.Filter, rec.Shards = filter, shards
	return rec, err
}
