package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/walscribe/walscribe/integrity"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/verify"
)

// integrityTrail is a trail written by walscribe with integrity on, in two
// runs, and a copy of its database taken between them (as a backup would
// be).
type integrityTrail struct {
	dsn, early string // the trail, and the copy after the first run
	cfg        string // its configuration
	verifier   string // the verifier key's file
	dir        string // integrity.checkpoint_dir
}

// newIntegrityTrail writes 300 entries: 200 in a first run of walscribe,
// then the copy, then 100 in a second run.
func newIntegrityTrail(t *testing.T) *integrityTrail {
	t.Helper()
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE public.orders (id int PRIMARY KEY, note text, total numeric)`)
	keys := t.TempDir()
	signer := filepath.Join(keys, "signer.key")
	if out, code := walscribe(t, "keygen", "--signer", signer, "--name", "test.example/orders-audit"); code != 0 {
		t.Fatalf("keygen --signer: %d\n%s", code, out)
	}
	dir := t.TempDir()
	cfg := writeConfig(t, configFor(dsn, "public.orders")+fmt.Sprintf(
		"integrity:\n  enabled: true\n  signer_key_file: %q\n  checkpoint_interval: 100ms\n  checkpoint_dir: %q\n  leaf_hashing: both\n", signer, dir))
	setUp(t, cfg)
	tr := &integrityTrail{dsn: dsn, cfg: cfg, verifier: signer + ".pub", dir: dir}
	write := func(from, to int) {
		cmd := startRun(t, cfg, nil)
		conn := pgtest.Connect(t, dsn)
		for i := from; i <= to; i += 10 {
			pgtest.Exec(t, dsn, fmt.Sprintf(`INSERT INTO public.orders SELECT i, 'note ' || i, i * 1.5 FROM generate_series(%d, %d) i`, i, i+9))
		}
		eventually(t, "the entries stored", 30*time.Second, func() bool {
			return count(t, conn, `SELECT count(*) FROM audit.entries`) == to
		})
		conn.Close(context.Background())
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("walscribe run: %v", err)
		}
	}
	write(1, 200)
	tr.early = copyDatabase(t, dsn, "early")
	write(201, 300)
	return tr
}

// copyDatabase copies the database of dsn (no session may be connected to
// it) and returns the copy's DSN.
func copyDatabase(t *testing.T, dsn, suffix string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := cfg.Database + "_" + suffix
	admin := pgtest.Connect(t, srv.DSN("postgres"))
	if _, err := admin.Exec(context.Background(), `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()+` TEMPLATE `+pgx.Identifier{cfg.Database}.Sanitize()); err != nil {
		t.Fatalf("copy database: %v", err)
	}
	t.Cleanup(func() {
		admin := pgtest.Connect(t, srv.DSN("postgres"))
		admin.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
	})
	return strings.Replace(dsn, "/"+cfg.Database+"?", "/"+name+"?", 1)
}

// tamper copies the trail's database and changes it as a superuser would,
// the guard and the append-only triggers out of the way, and returns the
// copy's DSN.
func (tr *integrityTrail) tamper(t *testing.T, name string, stmts ...string) string {
	t.Helper()
	dsn := copyDatabase(t, tr.dsn, name)
	pgtest.Exec(t, dsn, append([]string{`DROP EVENT TRIGGER walscribe_guard_audit`, `DROP EVENT TRIGGER walscribe_guard_audit_drop`, `DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT c.oid::regclass AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		          WHERE n.nspname = 'audit' AND c.relkind IN ('r', 'p') LOOP
			EXECUTE format('ALTER TABLE %s DISABLE TRIGGER USER', r.t);
		END LOOP; END $$`}, stmts...)...)
	return dsn
}

// verifyDSN runs walscribe verify on the trail in dsn.
func (tr *integrityTrail) verify(t *testing.T, dsn string, args ...string) (string, int) {
	t.Helper()
	return walscribe(t, append([]string{"verify", "--dsn", dsn, "--key", tr.verifier, "--checkpoints", tr.dir}, args...)...)
}

// TestVerify: walscribe verify finds an intact trail intact (exit 0), and
// names what a superuser did to a copy of it (exit 1): a value changed, an
// entry deleted in the middle, the newest entries deleted with the log's
// records of them (only the checkpoint outside the database shows it), an
// entry inserted, two entries' contents swapped, the database restored from
// an earlier copy. A wrong key cannot verify (exit 2). An inclusion proof
// checks with tlog's own verifier.
func TestVerify(t *testing.T) {
	tr := newIntegrityTrail(t)
	out, code := tr.verify(t, tr.dsn)
	if code != 0 || !strings.Contains(out, "intact: 300 entries read") {
		t.Fatalf("verify of the untouched trail: exit %d\n%s", code, out)
	}
	if out, code := walscribe(t, "status", "--config", tr.cfg); code != 0 || !regexp.MustCompile(`integrity log\s+300 entries, signed up to 300`).MatchString(out) {
		t.Errorf("status: exit %d, want the integrity log's state\n%s", code, out)
	}
	files, _ := filepath.Glob(filepath.Join(tr.dir, "checkpoint-*"))
	if len(files) != 1 {
		t.Errorf("checkpoint files %v, want one, of today", files)
	}

	cases := []struct {
		name  string
		stmts []string
		want  []string // regular expressions, each matching a line of the output
	}{
		{"value", []string{`UPDATE audit.entries SET new = jsonb_set(new, '{note}', '"forged"') WHERE id = 50`},
			[]string{`^altered id=50 table=public.orders commit_lsn=\S+: `}},
		{"middle", []string{`DELETE FROM audit.entries WHERE id = 60`},
			[]string{`^missing id=60: `}},
		{"newest", []string{`DELETE FROM audit.entries WHERE id > 280`,
			`DELETE FROM audit.integrity_checkpoints WHERE tree_size > 280`, `DELETE FROM audit.integrity_leaves WHERE first_id > 200`},
			[]string{`^missing ids=201-300: .*checkpoint-\S+ vouches for 300 entries`}},
		{"inserted", []string{`INSERT INTO audit.entries (id, commit_lsn, seq, committed_at, schema_name, table_name, action, new)
			SELECT 70, commit_lsn, 99, committed_at + interval '1 microsecond', 'public', 'orders', 'delete', '{}' FROM audit.entries WHERE id = 70`,
			`INSERT INTO audit.entries (id, commit_lsn, seq, committed_at, schema_name, table_name, action, new)
			SELECT 301, '7/0', 1, committed_at, 'public', 'orders', 'delete', '{}' FROM audit.entries WHERE id = 300`},
			[]string{`^inserted id=70 table=public.orders .*: a second entry with id 70`, `^inserted id=301 table=public.orders .*: the integrity log has no leaf`}},
		{"swapped", []string{`UPDATE audit.entries a SET new = b.new, pk = b.pk FROM audit.entries b WHERE (a.id, b.id) IN ((80, 81), (81, 80))`},
			[]string{`^altered id=80 `, `^altered id=81 `}},
		{"checkpoint", []string{`UPDATE audit.integrity_checkpoints SET tree_size = tree_size + 1 WHERE tree_size = (SELECT max(tree_size) FROM audit.integrity_checkpoints)`},
			[]string{`^checkpoint: checkpoint of size 301 in the database: the row says size 301, the signed checkpoint 300`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dsn := tr.tamper(t, c.name, c.stmts...)
			out, code := tr.verify(t, dsn)
			if code != 1 {
				t.Errorf("exit %d, want 1 (tampered)\n%s", code, out)
			}
			for _, w := range c.want {
				if !regexp.MustCompile(`(?m)` + w).MatchString(out) {
					t.Errorf("no line matches %s:\n%s", w, out)
				}
			}
		})
	}
	t.Run("restored", func(t *testing.T) {
		out, code := tr.verify(t, tr.early)
		if code != 1 || !regexp.MustCompile(`(?m)^missing ids=201-300: .*cut short, or restored from an older backup`).MatchString(out) {
			t.Errorf("verify of the earlier copy: exit %d, want 1 naming entries 201-300\n%s", code, out)
		}
		// Without the checkpoints kept outside, the copy looks whole:
		// that is what they are for.
		out, code = walscribe(t, "verify", "--dsn", tr.early, "--key", tr.verifier)
		if code != 0 {
			t.Errorf("verify of the earlier copy without the outside checkpoints: exit %d\n%s", code, out)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.key")
		if out, code := walscribe(t, "keygen", "--signer", other, "--name", "test.example/orders-audit"); code != 0 {
			t.Fatalf("keygen: %s", out)
		}
		out, code := walscribe(t, "verify", "--dsn", tr.dsn, "--key", other+".pub", "--checkpoints", tr.dir)
		if code != 2 || !strings.Contains(out, "no checkpoint is signed by the verifier key given") {
			t.Errorf("verify with another key: exit %d, want 2 and why\n%s", code, out)
		}
		out, code = walscribe(t, "verify", "--dsn", tr.dsn, "--key", filepath.Join(filepath.Dir(tr.verifier), "signer.key"))
		if code != 2 || !strings.Contains(out, "signer key") {
			t.Errorf("verify given the signer key: exit %d, want 2 and why\n%s", code, out)
		}
	})
	t.Run("proof", func(t *testing.T) {
		out, code := tr.verify(t, tr.dsn, "--entry", "123", "--json")
		if code != 0 {
			t.Fatalf("verify --entry: exit %d\n%s", code, out)
		}
		var p verify.Proof
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		key, err := os.ReadFile(tr.verifier)
		if err != nil {
			t.Fatal(err)
		}
		v, err := integrity.ParseVerifier(string(key))
		if err != nil {
			t.Fatal(err)
		}
		cp, err := integrity.Open([]byte(p.Checkpoint), v)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p.Hashes, cp.Size, cp.Root, 122, p.LeafHash); err != nil || cp.Size != 300 {
			t.Errorf("the proof of entry 123 against the checkpoint of %d entries: %v", cp.Size, err)
		}
		if err := tlog.CheckRecord(p.Hashes, cp.Size, cp.Root, 121, p.LeafHash); err == nil {
			t.Error("the proof checks for another leaf too")
		}
	})
	t.Run("incremental", func(t *testing.T) {
		state := filepath.Join(t.TempDir(), "state.json")
		if out, code := tr.verify(t, tr.dsn, "--state", state); code != 0 {
			t.Fatalf("first run: %d\n%s", code, out)
		}
		out, code := tr.verify(t, tr.dsn, "--state", state)
		if code != 0 || !strings.Contains(out, "intact: 0 entries read") {
			t.Errorf("second run: exit %d, want 0 with nothing read\n%s", code, out)
		}
		// The state is a record outside the database too: a trail cut back
		// below it is found even without the checkpoint directory.
		out, code = walscribe(t, "verify", "--dsn", tr.early, "--key", tr.verifier, "--state", state)
		if code != 1 || !strings.Contains(out, "the last run verified 300 entries; the trail's log ends at 200") {
			t.Errorf("the earlier copy, from the state of the whole trail: exit %d, want 1 and why\n%s", code, out)
		}
	})
}
