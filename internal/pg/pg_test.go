package pg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/walscribe/walscribe/internal/pgtest"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &srv, pgtest.Options{})) }

// TestConnectDefaults: the connection carries walscribe's application_name
// unless the DSN names one, and always walscribe's search_path.
func TestConnectDefaults(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ dsn, want string }{
		{srv.DSN("postgres"), AppTool},
		{srv.DSN("postgres") + "&application_name=mine", "mine"},
		{srv.DSN("postgres") + "&search_path=public", AppTool},
	} {
		conn, err := Connect(ctx, tc.dsn, AppTool)
		if err != nil {
			t.Fatal(err)
		}
		var got, path string
		err = conn.QueryRow(ctx, `SELECT current_setting('application_name'), current_setting('search_path')`).Scan(&got, &path)
		conn.Close(ctx)
		if err != nil || got != tc.want {
			t.Errorf("application_name = %q, %v; want %q", got, err, tc.want)
		}
		if path != SearchPath {
			t.Errorf("with %s: search_path = %q, want %q", tc.dsn, path, SearchPath)
		}
	}
	repl, err := ConnectReplication(ctx, srv.DSN("postgres"), AppDaemon, map[string]string{"TimeZone": "UTC"})
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(ctx)
	if got := repl.ParameterStatus("application_name"); got != AppDaemon {
		t.Errorf("replication connection application_name = %q, want %q", got, AppDaemon)
	}
	if got := repl.ParameterStatus("TimeZone"); got != "UTC" {
		t.Errorf("replication connection TimeZone = %q, want UTC", got)
	}
}

// TestClassify classifies errors the real server returns.
func TestClassify(t *testing.T) {
	ctx := context.Background()
	conn, err := Connect(ctx, srv.NewDB(t), AppTool)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET search_path = public; CREATE TABLE t (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string) error {
		_, err := conn.Exec(ctx, sql)
		if err == nil {
			t.Fatalf("%s: no error", sql)
		}
		return err
	}
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"none", nil, None},
		{"unique violation", exec(`INSERT INTO t VALUES (1), (1)`), Data},
		{"invalid input", exec(`SELECT 'x'::int`), Data},
		{"value too long for btree", exec(`CREATE TEMP TABLE w (v text PRIMARY KEY); INSERT INTO w SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i`), Data},
		{"undefined table", exec(`SELECT * FROM missing`), Fatal},
		{"syntax", exec(`SELEC 1`), Fatal},
		{"statement timeout", exec(`SET statement_timeout = '10ms'; SELECT pg_sleep(1)`), Retry},
	}
	conn.Exec(ctx, `RESET statement_timeout`)

	victim, err := Connect(ctx, srv.DSN("postgres"), "victim")
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	victim.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid)
	conn.Exec(ctx, fmt.Sprintf(`SELECT pg_terminate_backend(%d)`, pid))
	_, terminated := victim.Exec(ctx, `SELECT 1`)
	cases = append(cases, struct {
		name string
		err  error
		want Class
	}{"terminated backend", terminated, Retry})

	port, _ := pgtest.FreePort()
	_, refused := Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/x?sslmode=disable", port), AppTool)
	_, noDB := Connect(ctx, srv.DSN("no_such_database"), AppTool)
	_, badDSN := Connect(ctx, "postgres://[::1", AppTool)
	_, noTLS := Connect(ctx, srv.DSN("postgres")+"&sslmode=require", AppTool) // the test server has no TLS
	cases = append(cases, []struct {
		name string
		err  error
		want Class
	}{
		{"connection refused", refused, Retry},
		{"no such database", noDB, Fatal},
		{"bad dsn", badDSN, Fatal},
		{"TLS required, refused", noTLS, Fatal},
		{"cancelled", fmt.Errorf("wrapped: %w", context.Canceled), Retry},
		{"plain error", errors.New("something else"), Fatal},
	}...)
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("%s: Classify(%v) = %s, want %s", c.name, c.err, got, c.want)
		}
	}
}

// TestLSNRoundTrip: LSNs go to and come from the server as pg_lsn values,
// compared as numbers across the boundaries where their text order breaks.
func TestLSNRoundTrip(t *testing.T) {
	ctx := context.Background()
	conn, err := Connect(ctx, srv.DSN("postgres"), AppTool)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, pair := range [][2]pglogrepl.LSN{{0xFFFFFFF, 0x10000000}, {0xFFFFFFFF, 0x1_00000000}, {0xF_FFFFFFFF, 0x10_00000000}} {
		var back pglogrepl.LSN
		var less bool
		if err := conn.QueryRow(ctx, `SELECT $2::pg_lsn, $1::pg_lsn < $2::pg_lsn`, pair[0], pair[1]).Scan(&back, &less); err != nil {
			t.Fatal(err)
		}
		if back != pair[1] || !less {
			t.Errorf("%s < %s: got %s, %v", pair[0], pair[1], back, less)
		}
	}
}
