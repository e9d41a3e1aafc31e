// Package apitest holds what the tests of the API and the web UI share:
// connection strings for the roles they read and record as, pools, and
// the events log_event puts into the stream, read through a test_decoding
// slot.
package apitest

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DBName is the database a connection URL names.
func DBName(dsn string) string {
	u, _ := url.Parse(dsn)
	return strings.TrimPrefix(u.Path, "/")
}

// AsUser is dsn with user as its user.
func AsUser(dsn, user string) string {
	u, _ := url.Parse(dsn)
	u.User = url.User(user)
	return u.String()
}

// Pool is a pool on dsn, closed when the test ends.
func Pool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Sent are the events log_event has put into the stream since the last
// call, as slot (a test_decoding slot) gives them: what walscribe will
// store in the trail.
func Sent(t testing.TB, conn *pgx.Conn, slot string) []map[string]any {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)`, slot)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range lines {
		if !strings.HasPrefix(l, "message:") || !strings.Contains(l, "prefix: walscribe.event,") {
			continue
		}
		_, content, _ := strings.Cut(l, "content:")
		var m map[string]any
		if err := json.Unmarshal([]byte(content), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		out = append(out, m)
	}
	return out
}
