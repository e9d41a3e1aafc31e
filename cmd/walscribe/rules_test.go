package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walscribe/walscribe/internal/pgtest"
)

const rulesSchema = `
CREATE SCHEMA billing;
CREATE TABLE public.users (id int PRIMARY KEY, email text, password_hash text, card text, updated_at timestamptz);
CREATE TABLE public.orders (id int PRIMARY KEY, total numeric, note text);
CREATE TABLE public.tmp_import (id int);
CREATE TABLE billing.invoice_2025 (id int PRIMARY KEY, amount numeric);
CREATE TABLE billing.invoice_2026 (id int PRIMARY KEY, amount numeric);`

func rulesConfig(dsn string) string {
	return `source:
  dsn: "` + dsn + `"
  status_interval: 1s
sink:
  batch_max_wait: 20ms
http:
  listen: ""
log:
  format: json
masking:
  secret: "85401636174f41f18bdcb54ad1269efa53a7af821cada95d75d7c5d43fb79524"
exclude_tables: [public.tmp_*]
tables:
  - name: public.*
  - name: public.users
    exclude: [password_hash, updated_at]
    mask: [card, email]
    mask_style: {email: redact}
  - name: billing.invoice_*
    diff: changes
    actions: [insert, update]
`
}

// TestConfigCheck prints what a good configuration records, table by
// table, and every problem of a broken one.
func TestConfigCheck(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, rulesSchema)
	good := writeConfig(t, rulesConfig(dsn))
	if out, code := walscribe(t, "setup", "--config", good); code != 0 {
		t.Fatalf("setup: %s", out)
	}
	out, code := walscribe(t, "config", "check", "--config", good)
	if code != 0 {
		t.Fatalf("config check of a good config failed (%d):\n%s", code, out)
	}
	for _, want := range []string{
		"public.users", "password_hash,updated_at", "card (hash),email (redact)",
		"billing.invoice_2026", "billing.invoice_*", "insert,update", "changes",
		"public.orders", "no problems: 4 tables tracked", "captured from their first row",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "tmp_import") {
		t.Errorf("an excluded table is listed:\n%s", out)
	}

	// The capture trigger puts FULL back on any ALTER TABLE of a tracked
	// table: switch it off to break the table.
	pgtest.Exec(t, dsn, `ALTER EVENT TRIGGER walscribe_capture DISABLE`, `ALTER TABLE public.orders REPLICA IDENTITY DEFAULT`)
	broken := writeConfig(t, strings.Replace(rulesConfig(dsn), "mask: [card, email]", "mask: [crad, email]", 1)+
		"  - name: sales.*\n  - name: public.nope\n")
	out, code = walscribe(t, "config", "check", "--config", broken)
	if code != 1 {
		t.Errorf("config check of a broken config: exit %d, want 1", code)
	}
	for _, want := range []string{
		"tables[1]: column crad is in no table this entry governs",
		"tables[3].name: sales.* matches no table",
		"tables[4].name: table public.nope does not exist",
		"public.orders: REPLICA IDENTITY is DEFAULT",
		"tables created later are not captured",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config check output lacks %q:\n%s", want, out)
		}
	}
	noSecret := writeConfig(t, strings.Replace(rulesConfig(dsn), `secret: "85401636174f41f18bdcb54ad1269efa53a7af821cada95d75d7c5d43fb79524"`, `secret: ""`, 1))
	out, code = walscribe(t, "config", "check", "--config", noSecret)
	if code != 1 || !strings.Contains(out, "masking.secret") {
		t.Errorf("a missing masking secret: exit %d, output:\n%s", code, out)
	}
}

// TestReloadOnHangup changes the rules of a running walscribe with SIGHUP.
func TestReloadOnHangup(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, rulesSchema)
	cfgText := rulesConfig(dsn)
	cfg := writeConfig(t, cfgText)
	setUp(t, cfg)
	cmd := startRun(t, cfg, nil)
	conn := pgtest.Connect(t, dsn)
	ctx := context.Background()
	waitCount := func(what, sql string, want int) {
		t.Helper()
		eventually(t, what, 30*time.Second, func() bool { return count(t, conn, sql) == want })
	}
	if _, err := conn.Exec(ctx, `INSERT INTO public.orders VALUES (1, 10, 'first')`); err != nil {
		t.Fatal(err)
	}
	waitCount("the first order", `SELECT count(*) FROM audit.entries WHERE table_name = 'orders'`, 1)

	// Exclude orders.note from now on, and reload.
	if err := writeFile(cfg, strings.Replace(cfgText, "  - name: public.*\n", "  - name: public.*\n    exclude: [note]\n", 1)); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitCount("the reload record", `SELECT count(*) FROM audit.rules WHERE reason = 'reload'`, 1)
	if _, err := conn.Exec(ctx, `INSERT INTO public.orders VALUES (2, 20, 'second')`); err != nil {
		t.Fatal(err)
	}
	waitCount("the second order", `SELECT count(*) FROM audit.entries WHERE table_name = 'orders'`, 2)
	if n := count(t, conn, `SELECT count(*) FROM audit.entries WHERE table_name = 'orders' AND new ? 'note'`); n != 1 {
		t.Errorf("%d orders entries carry note, want 1 (only the one before the reload)", n)
	}

	// A broken file is refused; the daemon goes on with the rules in force.
	if err := writeFile(cfg, cfgText+"  - name: bad pattern [\n"); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond)
	if _, err := conn.Exec(ctx, `INSERT INTO public.orders VALUES (3, 30, 'third')`); err != nil {
		t.Fatal(err)
	}
	waitCount("the third order", `SELECT count(*) FROM audit.entries WHERE table_name = 'orders'`, 3)
	if n := count(t, conn, `SELECT count(*) FROM audit.rules`); n != 2 {
		t.Errorf("%d rules records, want 2: a broken file must not be recorded", n)
	}
}
