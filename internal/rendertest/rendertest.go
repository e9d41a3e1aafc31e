// Package rendertest asks a real PostgreSQL how it renders values: the text
// its output functions write under the walsender's settings (what pgoutput
// sends) and to_jsonb. Tests compare the decoder's JSON with it.
package rendertest

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/cdc"
)

// Connect opens a connection with the walsender session's settings, so that
// values come out in the text form pgoutput sends. It is closed when the
// test ends.
func Connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range cdc.SessionSettings {
		cfg.RuntimeParams[k] = v
	}
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect with walsender settings: %v", err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

// Rendering is what the server says about one value: its type, the text its
// output function writes (what pgoutput sends), and its to_jsonb.
type Rendering struct {
	OID     uint32
	Text    []byte
	ToJSONB []byte
}

// Render evaluates expr on conn. It uses the simple protocol so that the
// value arrives in text form, written by the type's output function under
// the session's settings, exactly as pgoutput writes column values. (A
// ::text cast is not the same: bool, bpchar, inet and xml have casts to text
// that differ from their output functions.)
func Render(ctx context.Context, conn *pgx.Conn, expr string) (Rendering, error) {
	q := `SELECT pg_typeof(v)::oid, v, to_jsonb(v) FROM (SELECT ` + expr + ` AS v) s`
	rows, err := conn.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return Rendering{}, fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Rendering{}, fmt.Errorf("%s: %w", q, err)
		}
		return Rendering{}, fmt.Errorf("%s: no row", q)
	}
	raw := rows.RawValues()
	oid, err := strconv.ParseUint(string(raw[0]), 10, 32)
	if err != nil {
		return Rendering{}, fmt.Errorf("%s: type oid %q: %w", q, raw[0], err)
	}
	if raw[1] == nil {
		return Rendering{}, fmt.Errorf("%s: the value is NULL; pgoutput sends no text for NULL", q)
	}
	r := Rendering{
		OID:     uint32(oid),
		Text:    append([]byte(nil), raw[1]...),
		ToJSONB: append([]byte(nil), raw[2]...),
	}
	rows.Close()
	return r, rows.Err()
}

// RequireSameJSONB fails the test unless got and want are equal as jsonb and
// render byte-identically once the server has normalised both.
func RequireSameJSONB(t testing.TB, conn *pgx.Conn, got, want []byte) {
	t.Helper()
	var (
		equal         bool
		gotNF, wantNF string
	)
	err := conn.QueryRow(context.Background(), `SELECT $1::text::jsonb = $2::text::jsonb, $1::text::jsonb::text, $2::text::jsonb::text`,
		string(got), string(want)).Scan(&equal, &gotNF, &wantNF)
	if err != nil {
		t.Fatalf("compare as jsonb: %v\n got: %s\nwant: %s", err, got, want)
	}
	if !equal || gotNF != wantNF {
		t.Fatalf("rendering differs from to_jsonb (jsonb equal: %v)\n got: %s\nwant: %s\n got (normalised): %s\nwant (normalised): %s",
			equal, got, want, gotNF, wantNF)
	}
}
