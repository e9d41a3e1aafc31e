package setup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/rules"
)

// TableReport is what walscribe will record of one table, and the table's
// state in the database.
type TableReport struct {
	Table           string            // schema.table
	Entry           string            // the tables entry that governs it
	Actions         []string          // recorded actions
	Exclude         []string          // columns left out
	Mask            map[string]string // column → hash or redact
	Diff            string            // full or changes
	Retention       string            // "" for the default class
	ReplicaIdentity string            // full, default, index or nothing
	Published       bool              // in the publication
	ContextTrigger  bool              // the context bridge's trigger is on it
}

// Report is the outcome of Inspect.
type Report struct {
	Tables []TableReport
	// Problems say what is wrong and what to do, each starting with the
	// config key or the table it concerns.
	Problems []string
	// Warnings say what weakens the trail without being wrong: the daemon
	// connecting as a superuser, say.
	Warnings []string `json:",omitempty"`
	// CaptureInstalled: tables created later that match are captured.
	CaptureInstalled bool
}

// Inspect compares the rules with the database: which tables they track and
// how, and every problem found — a pattern that matches nothing, a named
// table that does not exist, an excluded or masked column that no governed
// table has, a tracked table that is not published or not REPLICA IDENTITY
// FULL or lacks the context trigger (or has one that is not the bridge's of
// schema), a published table no entry tracks.
func Inspect(ctx context.Context, conn *pgx.Conn, rs *rules.Set, publication, schema, skipSchema string) (*Report, error) {
	tables, unmatched, err := ResolveTables(ctx, conn, rs, skipSchema)
	if err != nil {
		return nil, err
	}
	r := &Report{}
	entries := rs.Entries()
	keyOf := map[string]string{}
	for i, e := range entries {
		keyOf[e.Name] = fmt.Sprintf("tables[%d]", i)
	}
	for _, p := range unmatched {
		r.Problems = append(r.Problems, fmt.Sprintf("%s.name: %s matches no table (tables created later that match it are captured)", keyOf[p], p))
	}
	published, err := publishedSet(ctx, conn, publication)
	if err != nil {
		return nil, err
	}
	// Columns that each entry names, and whether a governed table has them.
	seenCol := map[string]map[string]bool{} // entry → column → found
	for _, t := range tables {
		var oid *uint32
		var ident *string
		var trigState *string // pg_trigger.tgenabled: A (always), O (origin), R (replica), D (disabled)
		var genuine bool
		err := conn.QueryRow(ctx, `SELECT c.oid, CASE c.relreplident WHEN 'f' THEN 'full' WHEN 'd' THEN 'default' WHEN 'i' THEN 'index' ELSE 'nothing' END,
				(SELECT g.tgenabled::text FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = 'walscribe_context'),
				EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = 'walscribe_context' AND `+genuineTrigger("$2")+`)
			FROM pg_class c WHERE c.oid = to_regclass($1)`, t.Ident(), schema).Scan(&oid, &ident, &trigState, &genuine)
		trig := trigState != nil
		if err != nil && err != pgx.ErrNoRows {
			return nil, fmt.Errorf("inspect %s: %w", t, err)
		}
		if oid == nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: table %s does not exist: create it, or fix or remove this entry", t.Key, t))
			continue
		}
		tr, _ := rs.For(t.Schema, t.Name)
		rep := TableReport{
			Table: t.String(), Entry: tr.Entry, Actions: actionList(tr.Actions), Diff: "full", Retention: tr.Retention,
			ReplicaIdentity: *ident, Published: published[t.String()], ContextTrigger: trig,
			Exclude: slices.Sorted(maps.Keys(tr.Exclude)), Mask: map[string]string{},
		}
		if tr.Diff == rules.Changes {
			rep.Diff = "changes"
		}
		for c, st := range tr.Mask {
			rep.Mask[c] = st.String()
		}
		r.Tables = append(r.Tables, rep)
		cols, err := columnsOf(ctx, conn, *oid)
		if err != nil {
			return nil, err
		}
		if seenCol[tr.Entry] == nil {
			seenCol[tr.Entry] = map[string]bool{}
		}
		for c := range tr.Exclude {
			seenCol[tr.Entry][c] = seenCol[tr.Entry][c] || slices.Contains(cols, c)
		}
		for c := range tr.Mask {
			seenCol[tr.Entry][c] = seenCol[tr.Entry][c] || slices.Contains(cols, c)
		}
		fix := "run walscribe setup"
		if *ident != "full" {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: REPLICA IDENTITY is %s, so updates and deletes lack the old row: %s (or ALTER TABLE %s REPLICA IDENTITY FULL;)", t, strings.ToUpper(*ident), fix, t.Ident()))
		}
		if !rep.Published {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: not in publication %q, so nothing of it is captured: %s", t, publication, fix))
		}
		switch {
		case !trig:
			r.Problems = append(r.Problems, fmt.Sprintf("%s: no context trigger, so its changes may lack who made them: %s", t, fix))
		case *trigState == "D":
			r.Problems = append(r.Problems, fmt.Sprintf("%s: the context trigger walscribe_context is disabled, so its changes lack who made them and what the database saw: %s (it enables it again)", t, fix))
		case *trigState != "A":
			r.Problems = append(r.Problems, fmt.Sprintf("%s: the context trigger walscribe_context is not ENABLE ALWAYS, so session_replication_role can skip it: %s", t, fix))
		case !genuine:
			r.Problems = append(r.Problems, fmt.Sprintf("%s: the trigger walscribe_context is not the bridge's (another function, a WHEN condition, fewer events or a column list), so changes can pass without who made them: %s (it puts the bridge's back)", t, fix))
		}
	}
	for _, e := range entries {
		cols := seenCol[e.Name]
		for _, c := range slices.Sorted(maps.Keys(cols)) {
			if !cols[c] {
				r.Problems = append(r.Problems, fmt.Sprintf("%s: column %s is in no table this entry governs: check its spelling", keyOf[e.Name], c))
			}
		}
	}
	tracked := map[string]bool{}
	for _, t := range tables {
		tracked[t.String()] = true
	}
	tracked[schema+"."+BridgeTruncates] = true // the bridge's reports, published by setup
	for _, p := range slices.Sorted(maps.Keys(published)) {
		if !tracked[p] {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: in publication %q but no entry tracks it (or an exclusion names it): run walscribe setup to remove it", p, publication))
		}
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_event_trigger WHERE evtname = 'walscribe_capture' AND evtenabled <> 'D'`).Scan(&n); err != nil {
		return nil, fmt.Errorf("read event triggers: %w", err)
	}
	r.CaptureInstalled = n > 0
	hasPattern := slices.ContainsFunc(entries, func(e rules.EntryInfo) bool { return !e.Exact })
	if hasPattern && !r.CaptureInstalled {
		r.Problems = append(r.Problems, "tables created later are not captured: the event trigger walscribe_capture is missing; run walscribe setup as a superuser once")
	}
	return r, nil
}

func actionList(s rules.ActionSet) []string {
	var out []string
	for _, a := range []string{"insert", "update", "delete", "truncate"} {
		if s.Has(auditAction(a)) {
			out = append(out, a)
		}
	}
	return out
}

func columnsOf(ctx context.Context, conn *pgx.Conn, oid uint32) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT attname::text FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, oid)
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func publishedSet(ctx context.Context, conn *pgx.Conn, publication string) (map[string]bool, error) {
	rows, err := conn.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_publication p
		JOIN pg_publication_rel pr ON pr.prpubid = p.oid JOIN pg_class c ON c.oid = pr.prrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = $1`, publication)
	if err != nil {
		return nil, fmt.Errorf("read publication: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read publication: %w", err)
	}
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

func auditAction(a string) audit.Action { return audit.Action(a) }

// TrustProblems reports what weakens the role model in the source database
// of conn: as a problem, pg_logical_emit_message executable by PUBLIC
// although the configuration revokes it; as warnings, a daemon role
// (daemon, the user of source.dsn) that is a superuser or may act as the
// trail's owner.
func TrustProblems(ctx context.Context, conn *pgx.Conn, r Roles, daemon string) (problems, warnings []string, err error) {
	r = r.orDefault()
	if r.RevokeEmitMessage {
		_, public, err := emitMessage(ctx, conn)
		if err != nil {
			return nil, nil, err
		}
		if public {
			problems = append(problems, "every role may call pg_logical_emit_message and write messages walscribe reads (events of its own): run walscribe setup as a superuser (--admin-dsn), or set roles.revoke_emit_message: false to accept it")
		}
	}
	if daemon == "" {
		return problems, nil, nil
	}
	var super, member bool
	err = conn.QueryRow(ctx, `SELECT r.rolsuper, coalesce(pg_has_role(r.oid, o.oid, 'MEMBER'), false)
		FROM pg_roles r LEFT JOIN pg_roles o ON o.rolname = $2 WHERE r.rolname = $1`, daemon, r.Owner).Scan(&super, &member)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, nil, fmt.Errorf("read role %s: %w", daemon, err)
	case super:
		warnings = append(warnings, fmt.Sprintf("the daemon connects as %s, a superuser: give it a role of its own that may only stream and append (docs/operations.md, \"Roles and privileges\")", daemon))
	case member:
		warnings = append(warnings, fmt.Sprintf("the daemon's role %s may act as %s and so redefine the trail's functions: run REVOKE %s FROM %s",
			daemon, r.Owner, pgx.Identifier{r.Owner}.Sanitize(), pgx.Identifier{daemon}.Sanitize()))
	}
	return problems, warnings, nil
}
