package pgtest

import (
	"context"
	"os"
	"testing"
)

var srv *Server

func TestMain(m *testing.M) { os.Exit(Main(m, &srv, Options{})) }

func TestServerIsLogical(t *testing.T) {
	conn := Connect(t, srv.NewDB(t))
	var level string
	if err := conn.QueryRow(context.Background(), "SHOW wal_level").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		t.Fatalf("wal_level = %q, want logical", level)
	}
}

func TestCrashAndRestart(t *testing.T) {
	if srv.external != nil {
		t.Skip("external server")
	}
	dsn := srv.NewDB(t)
	Exec(t, dsn, "CREATE TABLE t (id int)", "INSERT INTO t VALUES (1)")
	srv.Crash()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	conn := Connect(t, dsn)
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("rows after crash = %d, want 1", n)
	}
}
