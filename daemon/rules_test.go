package daemon

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/rules"
)

// secret is a masking key as config decodes it from masking.secret (64 hex
// digits): 32 random bytes.
var secret, _ = hex.DecodeString("86be47fcc85940127982078003d0041eb656cf39d3fc872581deb44ceb04fa45")

func mustRules(t *testing.T, cfg rules.Config) *rules.Set {
	t.Helper()
	rs, err := rules.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestRulesColumns: excluded columns never appear, masked ones are the
// HMAC of the value (or redacted), updates of excluded columns only are
// skipped.
func TestRulesColumns(t *testing.T) {
	h := newHarness(t, `CREATE TABLE users (id int PRIMARY KEY, name text, email text, password_hash text,
		card text, ssn text, updated_at timestamptz DEFAULT now())`, "users")
	h.cfg.Rules = mustRules(t, rules.Config{Secret: secret, Tables: []rules.TableConfig{{
		Name:                 "public.users",
		Exclude:              []string{"password_hash", "updated_at"},
		Mask:                 map[string]rules.Style{"card": rules.Hash, "email": rules.Hash, "ssn": rules.Redact},
		SkipUnchangedUpdates: true,
	}}})
	h.start()
	h.exec(`INSERT INTO users (id, name, email, password_hash, card, ssn) VALUES
		(1, 'Ada', 'ada@example.com', 'x1', '4111 1111 1111 1111', '078-05-1120'),
		(2, 'Bob', 'ada@example.com', 'x2', NULL, '219-09-9999')`)
	h.exec(`UPDATE users SET updated_at = now() + interval '1 hour'`)           // excluded only: skipped
	h.exec(`UPDATE users SET password_hash = 'y' WHERE id = 1`)                 // excluded only: skipped
	h.exec(`UPDATE users SET name = 'Ada L.', updated_at = now() WHERE id = 1`) // recorded, changed = {name}
	h.exec(`UPDATE users SET card = '5500 0000 0000 0004' WHERE id = 2`)        // masked column changed
	h.exec(`DELETE FROM users WHERE id = 2`)
	h.sync()
	got := h.entries(`true`)
	var actions []string
	for _, e := range got {
		actions = append(actions, e.Action)
	}
	if strings.Join(actions, ",") != "insert,insert,update,update,delete" {
		t.Fatalf("actions %v, want insert,insert,update,update,delete", actions)
	}
	mac := func(v string) string {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(v))
		return hex.EncodeToString(m.Sum(nil))
	}
	checks := []struct {
		what  string
		query string
		args  []any
		want  int
	}{
		{"excluded columns anywhere", `SELECT count(*) FROM audit.entries WHERE table_name = 'users' AND
			(coalesce(old, '{}') ?| '{password_hash,updated_at}' OR coalesce(new, '{}') ?| '{password_hash,updated_at}'
			 OR pk ?| '{password_hash,updated_at}' OR changed && '{password_hash,updated_at}')`, nil, 0},
		{"card as its HMAC", `SELECT count(*) FROM audit.entries WHERE table_name = 'users' AND action = 'insert' AND new->>'card' = $1`,
			[]any{mac("4111 1111 1111 1111")}, 1},
		{"card never in clear", `SELECT count(*) FROM audit.entries WHERE table_name = 'users' AND (new::text LIKE '%4111%' OR old::text LIKE '%4111%' OR new::text LIKE '%5500%' OR old::text LIKE '%5500%')`, nil, 0},
		{"equal values, equal hashes", `SELECT count(DISTINCT new->>'email') FROM audit.entries WHERE table_name = 'users' AND action = 'insert'`, nil, 1},
		{"email as its HMAC", `SELECT count(*) FROM audit.entries WHERE table_name = 'users' AND action = 'insert' AND new->>'email' = $1`,
			[]any{mac("ada@example.com")}, 2},
		{"NULL stays NULL", `SELECT count(*) FROM audit.entries WHERE table_name = 'users' AND action = 'insert' AND new->'card' = 'null'`, nil, 1},
		{"ssn redacted", `SELECT count(*) FROM audit.entries WHERE table_name = 'users' AND (new->>'ssn' = '[redacted]' OR old->>'ssn' = '[redacted]')`, nil, 5},
		{"name update: changed name only", `SELECT count(*) FROM audit.entries WHERE table_name = 'users' AND action = 'update' AND changed = '{name}' AND new->>'name' = 'Ada L.'`, nil, 1},
		{"card update: old and new hashed", `SELECT count(*) FROM audit.entries WHERE table_name = 'users' AND action = 'update' AND changed = '{card}'
			AND old->'card' = 'null' AND new->>'card' = $1`, []any{mac("5500 0000 0000 0004")}, 1},
	}
	for _, c := range checks {
		if n := h.count(c.query, c.args...); n != c.want {
			t.Errorf("%s: %d, want %d", c.what, n, c.want)
		}
	}
	h.stop()
}

// TestRulesDiffAndActions: diff: changes keeps only the changed columns of
// updates; actions records only the listed ones.
func TestRulesDiffAndActions(t *testing.T) {
	h := newHarness(t, `CREATE TABLE d (id int PRIMARY KEY, a text, b text, c text);
		CREATE TABLE onlyins (id int PRIMARY KEY, v text)`, "d", "onlyins")
	h.cfg.Rules = mustRules(t, rules.Config{Tables: []rules.TableConfig{
		{Name: "public.d", Diff: rules.Changes},
		{Name: "public.only*", Actions: must(rules.Actions(audit.Insert, audit.Truncate))},
	}})
	h.start()
	h.exec(`INSERT INTO d VALUES (1, 'a', 'b', 'c')`)
	h.exec(`UPDATE d SET b = 'B', c = 'C'`)
	h.exec(`INSERT INTO onlyins VALUES (1, 'x')`)
	h.exec(`UPDATE onlyins SET v = 'y'`)
	h.exec(`DELETE FROM onlyins`)
	h.exec(`TRUNCATE onlyins`)
	h.sync()
	var lines []string
	for _, e := range h.entries(`true`) {
		lines = append(lines, e.Table+" "+e.Action+" "+str(e.New))
	}
	want := []string{
		`d insert {"a": "a", "b": "b", "c": "c", "id": 1}`,
		`d update {"b": "B", "c": "C"}`,
		`onlyins insert {"v": "x", "id": 1}`,
		`onlyins truncate {"cascade": false, "restart_identity": false}`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'update' AND old = '{"b": "b", "c": "c"}' AND pk = '{"id": 1}'`); n != 1 {
		t.Error("diff: changes: the old image is not the changed columns only, or the key is missing")
	}
	h.stop()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestRulesReload changes the rules of a running daemon: changes before
// the reload are recorded with the old rules, changes after it with the new
// ones, none lost or doubled, and the rules in force are recorded with the
// position they apply from.
func TestRulesReload(t *testing.T) {
	h := newHarness(t, `CREATE TABLE r (id int PRIMARY KEY, note text, secret text)`, "r")
	before := mustRules(t, rules.Config{Tables: []rules.TableConfig{{Name: "public.r"}}})
	after := mustRules(t, rules.Config{Tables: []rules.TableConfig{{Name: "public.r", Exclude: []string{"secret"}}}})
	h.cfg.Rules = before
	h.start()
	ctx := context.Background()
	for i := 1; i <= 50; i++ {
		h.exec(`INSERT INTO r VALUES ($1, 'n', 's')`, i)
	}
	h.sync()
	var boundary string
	if err := h.conn.QueryRow(ctx, `SELECT max(end_lsn)::text FROM audit.checkpoints`).Scan(&boundary); err != nil {
		t.Fatal(err)
	}
	h.d.Reload(after)
	// Wait until the reload is in force: it is recorded when applied.
	h.waitFor("the reload to be recorded", func() bool {
		h.exec(`SELECT pg_logical_emit_message(false, 'other', 'nudge')`) // something to stream
		return h.count(`SELECT count(*) FROM audit.rules WHERE reason = 'reload'`) == 1
	})
	for i := 51; i <= 100; i++ {
		h.exec(`INSERT INTO r VALUES ($1, 'n', 's')`, i)
	}
	h.sync()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'r'`); n != 100 {
		t.Errorf("%d entries, want 100: none lost or doubled across the reload", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'r' AND (new->>'id')::int <= 50 AND new ? 'secret'`); n != 50 {
		t.Errorf("%d of the first 50 entries carry secret, want 50 (the old rules)", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'r' AND (new->>'id')::int > 50 AND NOT new ? 'secret'`); n != 50 {
		t.Errorf("%d of the last 50 entries lack secret, want 50 (the new rules)", n)
	}
	// The record says from where each set applies.
	rows := h.count(`SELECT count(*) FROM audit.rules WHERE slot = 'walscribe'`)
	if rows != 2 {
		t.Errorf("%d rules records, want 2 (start, reload)", rows)
	}
	if n := h.count(`SELECT count(*) FROM audit.rules WHERE reason = 'reload' AND from_lsn >= $1::pg_lsn
		AND rules->'tables'->0->'exclude' = '["secret"]'
		AND from_lsn < (SELECT min(commit_lsn) FROM audit.entries WHERE table_name = 'r' AND (new->>'id')::int > 50)`, boundary); n != 1 {
		t.Error("the reload record does not sit between the last change under the old rules and the first under the new")
	}
	// A restart with the same rules records nothing new.
	h.stop()
	h.cfg.Rules = after
	h.start()
	h.sync()
	if n := h.count(`SELECT count(*) FROM audit.rules`); n != 2 {
		t.Errorf("%d rules records after a restart with the same rules, want 2", n)
	}
	h.stop()
}

// TestNewTableCapturedFromFirstRow: a table created while the daemon runs
// that matches a pattern is captured from its first row, the rows of the
// creating transaction included, with old images and context; one that an
// exclusion names is not.
func TestNewTableCapturedFromFirstRow(t *testing.T) {
	h := newHarness(t, `CREATE TABLE existing (id int PRIMARY KEY)`, "existing")
	rs := mustRules(t, rules.Config{
		Tables:        []rules.TableConfig{{Name: "public.*"}, {Name: "public.marker"}},
		ExcludeTables: []string{"public.oracle_*", "public.skip_*"},
	})
	h.cfg.Rules, h.setupRules = rs, rs
	h.setup()
	h.start()
	h.exec(`BEGIN;
		CREATE TABLE newt (id int PRIMARY KEY, v text);
		SELECT audit.set_context(actor_id => 'creator');
		INSERT INTO newt VALUES (1, 'in the creating transaction');
		COMMIT`)
	h.exec(`INSERT INTO newt VALUES (2, 'right after')`)
	h.exec(`UPDATE newt SET v = 'updated' WHERE id = 2`)
	h.exec(`CREATE TABLE skip_me (id int)`)
	h.exec(`INSERT INTO skip_me VALUES (1)`)
	h.exec(`BEGIN;
		CREATE TABLE parted (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
		INSERT INTO parted VALUES (1, 'eu');
		COMMIT`)
	h.exec(`CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us')`)
	h.exec(`INSERT INTO parted VALUES (2, 'us')`)
	h.exec(`DELETE FROM parted`)
	h.exec(`CREATE TABLE ctas AS SELECT 1 AS id`)
	h.exec(`INSERT INTO ctas VALUES (2)`)
	h.exec(`CREATE TABLE later_renamed (id int)`)
	h.exec(`ALTER TABLE later_renamed RENAME TO skip_renamed`)
	h.exec(`INSERT INTO skip_renamed VALUES (1)`)
	h.sync()
	var lines []string
	for _, e := range h.entries(`table_name NOT IN ('existing')`) {
		lines = append(lines, e.Table+" "+e.Action+" actor="+str(e.ActorID)+" new="+str(e.New))
	}
	want := []string{
		`newt insert actor=creator new={"v": "in the creating transaction", "id": 1}`,
		`newt insert actor=NULL new={"v": "right after", "id": 2}`,
		`newt update actor=NULL new={"v": "updated", "id": 2}`,
		`parted insert actor=NULL new={"id": 1, "region": "eu"}`,
		`parted insert actor=NULL new={"id": 2, "region": "us"}`,
		`parted delete actor=NULL new=NULL`,
		`parted delete actor=NULL new=NULL`,
		// The rows CREATE TABLE AS writes come before the table joins the
		// publication, at the end of the command; rows after it are captured.
		`ctas insert actor=NULL new={"id": 2}`,
	}
	// A table renamed into an exclusion is still published (it was
	// captured under its first name) but the exclusion wins: nothing of it
	// is recorded.
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'newt' AND action = 'update' AND old->>'v' = 'right after'`); n != 1 {
		t.Error("the new table's update has no old image: REPLICA IDENTITY FULL missing")
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'parted' AND action = 'delete' AND old ? 'region'`); n != 2 {
		t.Error("deletes from the new partitions have no full old image")
	}
	h.stop()
}

// TestCaptureCannotBeDodged: a session that presets walscribe.* settings
// (the names the capture and the bridge once used) keeps no new table out of
// the publication; a table owner's DISABLE TRIGGER of the context trigger is
// refused; a trigger the owner put in its place is replaced at the next
// ALTER TABLE.
func TestCaptureCannotBeDodged(t *testing.T) {
	h := newHarness(t, `CREATE TABLE existing (id int PRIMARY KEY)`, "existing")
	rs := mustRules(t, rules.Config{Tables: []rules.TableConfig{{Name: "public.*"}}, ExcludeTables: []string{"public.oracle_*"}})
	h.cfg.Rules, h.setupRules = rs, rs
	h.setup()
	h.start()
	h.exec(`BEGIN;
		SET LOCAL walscribe.capturing = 'on';
		CREATE TABLE dodger (id int PRIMARY KEY);
		INSERT INTO dodger VALUES (1);
		COMMIT`)
	if _, err := h.conn.Exec(context.Background(), `ALTER TABLE dodger DISABLE TRIGGER walscribe_context`); err == nil ||
		!strings.Contains(err.Error(), "walscribe audits table public.dodger") {
		t.Errorf("DISABLE TRIGGER walscribe_context on a tracked table: %v, want walscribe's refusal", err)
	}
	h.exec(`BEGIN; SET LOCAL audit.actor_id = 'who'; INSERT INTO dodger VALUES (2); COMMIT`)
	// The trigger replaced by one of the owner's: the next ALTER TABLE puts
	// the bridge's back.
	h.exec(`CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`)
	h.exec(`CREATE OR REPLACE TRIGGER walscribe_context BEFORE INSERT ON dodger FOR EACH STATEMENT EXECUTE FUNCTION public.noop()`)
	h.exec(`ALTER TABLE dodger ADD COLUMN note text`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM pg_trigger WHERE tgrelid = 'dodger'::regclass AND tgname = 'walscribe_context' AND tgenabled = 'A'
		AND tgtype = 62 AND tgfoid = 'audit.emit_context()'::regprocedure`); n != 1 {
		t.Error("the context trigger stayed disabled, or the owner's")
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'dodger'`); n != 2 {
		t.Errorf("%d entries of the table created with walscribe.capturing preset, want 2", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'dodger' AND pk = '{"id": 2}' AND actor_id = 'who' AND db_user IS NOT NULL`); n != 1 {
		t.Error("the change after DISABLE TRIGGER lacks its context")
	}
}
