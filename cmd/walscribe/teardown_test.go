package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// TestTeardownCommand: the command maps the configuration onto the names
// setup used, and --drop-audit-data needs --yes.
func TestTeardownCommand(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY)`)
	cfg := writeConfig(t, configFor(dsn, "public.t"))
	setUp(t, cfg)
	conn := pgtest.Connect(t, dsn)
	exists := func(sql string) bool {
		t.Helper()
		var ok bool
		if err := conn.QueryRow(context.Background(), sql).Scan(&ok); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return ok
	}
	const (
		slot    = `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'walscribe' AND database = current_database())`
		trigger = `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'walscribe_context')`
		schema  = `SELECT to_regclass('audit.entries') IS NOT NULL`
	)
	if !exists(slot) || !exists(trigger) || !exists(schema) {
		t.Fatal("setup did not create the slot, the context trigger and the audit schema")
	}

	steps := []struct {
		name                  string
		args                  []string
		code                  int
		said                  string
		slot, trigger, schema bool
	}{
		{"audit data without --yes", []string{"--drop-audit-data"}, 1, "add --yes", true, true, true},
		{"keep the audit data", nil, 0, `publication "walscribe": dropped`, false, false, true},
		{"drop the audit data", []string{"--drop-audit-data", "--yes"}, 0, `audit schema "audit": dropped`, false, false, false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out, code := walscribe(t, append([]string{"teardown", "--config", cfg}, s.args...)...)
			if code != s.code || !strings.Contains(out, s.said) {
				t.Fatalf("teardown %v exited %d, want %d, saying %q:\n%s", s.args, code, s.code, s.said, out)
			}
			if got := [3]bool{exists(slot), exists(trigger), exists(schema)}; got != [3]bool{s.slot, s.trigger, s.schema} {
				t.Errorf("after teardown %v: slot, context trigger, audit schema exist = %v, want %v", s.args, got, [3]bool{s.slot, s.trigger, s.schema})
			}
		})
	}
}

// TestTeardownForceStopsTheDaemon: teardown refuses while `walscribe run`
// streams; --force terminates the stream, and the daemon, finding its slot
// gone, exits with an error instead of carrying on.
func TestTeardownForceStopsTheDaemon(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE t (id int PRIMARY KEY)`)
	cfg := writeConfig(t, configFor(dsn, "public.t"))
	setUp(t, cfg)
	var logs bytes.Buffer
	run := command(t, "run", "--config", cfg)
	run.Stdout, run.Stderr = &logs, &logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	var runErr error
	exited := make(chan struct{})
	go func() {
		runErr = run.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		run.Process.Kill()
		<-exited
	})
	conn := pgtest.Connect(t, dsn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var active bool
		conn.QueryRow(context.Background(), `SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = 'walscribe'`).Scan(&active)
		if active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("walscribe run never streamed")
		}
		time.Sleep(50 * time.Millisecond)
	}

	if out, code := walscribe(t, "teardown", "--config", cfg); code == 0 || !strings.Contains(out, "--force") {
		t.Fatalf("teardown while walscribe runs exited %d, want a refusal that mentions --force:\n%s", code, out)
	}
	if out, code := walscribe(t, "teardown", "--config", cfg, "--force"); code != 0 || !strings.Contains(out, "terminated process") {
		t.Fatalf("teardown --force exited %d:\n%s", code, out)
	}
	select {
	case <-exited:
		if runErr == nil {
			t.Errorf("walscribe run exited 0 after its slot was dropped, want an error:\n%s", logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("walscribe run still runs 30s after teardown --force dropped its slot")
	}
	var slots int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walscribe'`).Scan(&slots); err != nil {
		t.Fatal(err)
	}
	if slots != 0 {
		t.Errorf("%d slots named walscribe after teardown --force and the daemon's exit, want 0", slots)
	}
}
