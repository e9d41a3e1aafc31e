package main

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/oracle"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/internal/workload"
)

// prepareWorkload creates the workload's tables and a marker table in the
// database at dsn, attaches the oracle to them, and returns the tables.
func prepareWorkload(t *testing.T, dsn string, conn *pgx.Conn) []string {
	t.Helper()
	ctx := context.Background()
	pgtest.Exec(t, dsn, workload.Schema, `CREATE TABLE marker (id serial PRIMARY KEY)`)
	if err := oracle.Install(ctx, conn); err != nil {
		t.Fatal(err)
	}
	tables := append([]string{"public.marker"}, workload.Tables...)
	for _, tbl := range tables {
		if err := oracle.Attach(ctx, conn, tbl); err != nil {
			t.Fatal(err)
		}
	}
	return tables
}

// waitMarker writes a marker row and waits until the trail holds it: every
// transaction committed before it is then stored too. It returns false on
// timeout.
func waitMarker(t *testing.T, conn *pgx.Conn, timeout time.Duration) bool {
	t.Helper()
	var marker int
	if err := conn.QueryRow(context.Background(), `INSERT INTO marker DEFAULT VALUES RETURNING id`).Scan(&marker); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for count(t, conn, `SELECT count(*) FROM audit.entries WHERE table_name = 'marker' AND pk = jsonb_build_object('id', $1::int)`, marker) == 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// checkTrail fails the test unless the trail equals the oracle and its ids
// are dense from 1.
func checkTrail(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	r, err := oracle.Compare(context.Background(), conn, "audit", []string{"marker"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Mismatches {
		t.Error(m)
	}
	if r.Changes == 0 {
		t.Fatal("the workload changed nothing: the comparison proves nothing")
	}
	t.Logf("oracle: %d changes in %d transactions compared", r.Changes, r.Transactions)
	if n := count(t, conn, `SELECT count(*) FROM (SELECT count(*) = max(id) AND min(id) = 1 AS dense FROM audit.entries) x WHERE dense`); n != 1 {
		t.Error("entry ids are not dense from 1")
	}
}
