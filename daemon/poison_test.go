package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// TestPoisonDoesNotStopTheTrail: values the server refuses in jsonb, text
// or an index row — written by any role, through row contents, session
// variables or raw logical messages — are stored, changed only as far as
// needed and flagged, and the trail goes on. (PostgreSQL 15's json input
// already refuses \u0000, lone surrogates and numbers beyond numeric, so
// those arrive here through messages; the jsonb package's tests cover them
// as column values too.)
func TestPoisonDoesNotStopTheTrail(t *testing.T) {
	h := newHarness(t, `CREATE TABLE j (id int PRIMARY KEY, doc json);
		CREATE TABLE nokey (a text, b text)`, "j", "nokey")
	h.start()
	h.sync()
	wide := incompressible(3000)
	h.exec(`INSERT INTO j VALUES (1, '{"k": "\\ud800"}')`)      // an escaped backslash, no surrogate
	h.exec(`INSERT INTO nokey VALUES ($1, $2)`, wide, wide+"y") // whole row as key: too wide for the index
	h.exec(`BEGIN; SET LOCAL audit.context = '{"n": 1e999999}'; INSERT INTO j VALUES (4, '1'); COMMIT`)
	h.exec(`BEGIN; SET LOCAL audit.request_id = '` + incompressible(5000) + `'; INSERT INTO j VALUES (5, '2'); COMMIT`)
	h.exec(`SELECT pg_logical_emit_message(false, 'walscribe.event', '{"action": "x\u0000y", "target": "t\u0000", "data": {"n": 1e999999}}')`)
	h.exec(`SELECT pg_logical_emit_message(false, 'walscribe.event', '{"action": "s", "data": {"k": "\ud800"}}')`) // lone surrogate
	h.exec(`SELECT audit.log_event('viewed', $1)`, incompressible(3000))                                           // a target too long for the row history index
	h.exec(`INSERT INTO j VALUES (6, '"fine"')`)
	h.sync()
	h.stop()

	for _, c := range []struct {
		what, where string
		flag        string
	}{
		{"escaped backslash", `table_name = 'j' AND pk = '{"id": 1}' AND new->'doc'->>'k' = '\ud800'`, ""},
		{"lone surrogate", `action = 's' AND new->>'k' = E'\uFFFD'`, "json_reencoded"},
		{"wide key", `table_name = 'nokey' AND pk ? 'sha256' AND length(new->>'a') = 3000`, "pk_hashed"},
		{"context number", `table_name = 'j' AND pk = '{"id": 4}' AND context->>'n' = '1e999999'`, "json_reencoded"},
		{"request id", `table_name = 'j' AND pk = '{"id": 5}' AND length(request_id) = 1024`, "text_clipped"},
		{"event", `action = 'x\u0000y' AND table_name = 't\u0000' AND new->>'n' = '1e999999'`, ""},
		{"long target", `action = 'viewed' AND length(table_name) = 256`, "text_clipped"},
	} {
		sql := `SELECT count(*) FROM audit.entries WHERE ` + c.where
		if c.flag != "" {
			sql += ` AND '` + c.flag + `' = ANY(flags)`
		}
		if n := h.count(sql); n != 1 {
			t.Errorf("%s: %d entries match (%s), want 1", c.what, n, sql)
		}
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'j' AND pk = '{"id": 6}' AND flags IS NULL`); n != 1 {
		t.Error("the change after the poison is not stored as decoded")
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE 'unstorable' = ANY(flags)`); n != 0 {
		t.Errorf("%d entries quarantined: MakeStorable should have handled every case here", n)
	}
	h.checkOracle()
}

// incompressible returns n hex digits of random data: values the server
// cannot compress below the index's row limit.
func incompressible(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// TestUnforeseenRefusalIsQuarantined: an entry the server refuses for its
// data in a way walscribe does not foresee (here: a trigger on the trail
// raising data_exception for it) is stored with its values as escaped text,
// flagged unstorable, beside the rest of its batch; nothing waits behind it.
func TestUnforeseenRefusalIsQuarantined(t *testing.T) {
	h := newHarness(t, `CREATE TABLE j (id int PRIMARY KEY, doc jsonb)`, "j")
	h.exec(`CREATE FUNCTION public.refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF jsonb_typeof(NEW.new) = 'object' AND NEW.new->'doc' ? 'refuse_me' THEN
				RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'data_exception';
			END IF;
			RETURN NEW;
		END $$`)
	h.exec(unguard) // the guard of the audit schema refuses triggers of others
	h.exec(`CREATE TRIGGER refuse_marked BEFORE INSERT ON audit.entries FOR EACH ROW EXECUTE FUNCTION public.refuse_marked()`)
	h.start()
	h.sync()
	h.exec(`BEGIN; INSERT INTO j VALUES (1, '{"ok": 1}'); INSERT INTO j VALUES (2, '{"refuse_me": "x"}'); COMMIT`)
	h.exec(`INSERT INTO j VALUES (3, '{"ok": 3}')`)
	h.sync()
	h.stop()
	// The refused transaction, both its entries, with their values as text.
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'j' AND 'unstorable' = ANY(flags)
		AND jsonb_typeof(new) = 'string' AND jsonb_typeof(pk) = 'string'`); n != 2 {
		t.Errorf("%d quarantined entries, want 2 (the refused transaction's)", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE 'unstorable' = ANY(flags)
		AND (new #>> '{}')::jsonb->'doc' ? 'refuse_me' AND (pk #>> '{}')::jsonb = '{"id": 2}'`); n != 1 {
		t.Error("the refused entry's values are not kept as text")
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'j' AND pk = '{"id": 3}' AND flags IS NULL`); n != 1 {
		t.Error("the transaction after the refused one is not stored as decoded")
	}
	h.checkDense("")
}

// TestLargeContextIsBounded: a 256 KB context on a 200-row UPDATE does not
// write 50 MB to the trail: each entry keeps its size, hash and beginning,
// flagged truncated; a long event payload likewise.
func TestLargeContextIsBounded(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY, v int)`, "t")
	h.start()
	h.exec(`INSERT INTO t SELECT i, 0 FROM generate_series(1, 200) i`)
	big := incompressible(256 << 10)
	tx, err := h.conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `SELECT set_config('audit.context', json_build_object('blob', $1::text)::text, true)`, big); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `UPDATE t SET v = 1`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.exec(`SELECT audit.log_event('exported', 'public.t', NULL, json_build_object('blob', $1::text)::jsonb, false)`, big)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'update' AND 'truncated' = ANY(flags)
		AND (context->'walscribe_truncated'->>'bytes')::int > 256000 AND length(context::text) < 1024`); n != 200 {
		t.Errorf("%d updates with a bounded, flagged context, want 200", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'exported' AND 'truncated' = ANY(flags) AND length(new::text) < 1024`); n != 1 {
		t.Error("the event's data is not bounded")
	}
}
