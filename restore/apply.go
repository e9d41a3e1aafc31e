package restore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walscribe/walscribe/auditctx"
)

// EventAction is the action of the event Apply records in the trail.
const EventAction = "restored"

// ErrEventNotAllowed means the restoring role may not call the bridge's
// log_event, so the restore could not be recorded in the trail; nothing
// was changed. The error's text says what to GRANT.
var ErrEventNotAllowed = errors.New("may not record the restore in the trail")

// Apply runs plan p on the source database, as who, in one transaction
// begun on db (a savepoint when db is a pgx.Tx: the restore then commits
// with it). In order, it checks that the role may call the bridge's
// log_event (ErrEventNotAllowed otherwise), sets who in the context
// variables (SET LOCAL, with the configured prefix) so that the change is
// attributed to them, locks the row and checks it is still as the entry
// left it, makes the change, and records a "restored" event (target
// schema.table, object_id the key, data {"entry_id", "kind", "schema",
// "table"}) with transactional => true: the event exists exactly when the
// restore commits. A refused plan, or a row that changed since, is a
// *RefusedError; nothing is changed then, nor on any other error.
func (r *Restorer) Apply(ctx context.Context, db Beginner, p *Plan, who auditctx.Context) error {
	if who.ActorID == "" && who.Actor == "" {
		return fmt.Errorf("apply entry %d: say who restores it: set the actor's ActorID or Actor", p.EntryID)
	}
	if err := p.Err(); err != nil {
		return err
	}
	if p.Change.SQL == "" || p.Check.SQL == "" {
		return fmt.Errorf("apply entry %d: the plan holds no statement: build it with Plan", p.EntryID)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("apply entry %d: begin: %w", p.EntryID, err)
	}
	// After Commit it does nothing; on failure the error that matters is
	// the one returned. Sent even when ctx is done, so that a savepoint of
	// the caller's transaction is not left behind.
	defer tx.Rollback(context.WithoutCancel(ctx))
	role, err := r.checkEventGrant(ctx, tx)
	if err != nil {
		return fmt.Errorf("apply entry %d: %w", p.EntryID, err)
	}
	if err := auditctx.SetLocal(ctx, tx, who, auditctx.WithPrefix(r.cfg.Prefix)); err != nil {
		return fmt.Errorf("apply entry %d: %w", p.EntryID, err)
	}
	refs, err := rowState(ctx, tx, p.Check, p)
	if err != nil {
		return fmt.Errorf("apply entry %d: check the row: %w", p.EntryID, err)
	}
	if len(refs) > 0 {
		return &RefusedError{EntryID: p.EntryID, Refusals: refs}
	}
	tag, err := tx.Exec(ctx, p.Change.SQL, p.Change.Args...)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		return &RefusedError{EntryID: p.EntryID, Refusals: []Refusal{{Code: CodeChangedSince,
			Reason: fmt.Sprintf("a row with the same key or unique value exists in %s now (%s)", qualified(p.Schema, p.Table), pgErr.ConstraintName)}}}
	case err != nil:
		return fmt.Errorf("apply entry %d: %s: %w", p.EntryID, p.Kind, err)
	case tag.RowsAffected() != 1:
		return &RefusedError{EntryID: p.EntryID, Refusals: []Refusal{{Code: CodeChangedSince,
			Reason: fmt.Sprintf("the %s changed %d rows, not 1: the row changed since the entry, or a trigger skipped the change", p.Kind, tag.RowsAffected())}}}
	}
	data, err := rawJSON(struct {
		EntryID int64  `json:"entry_id"`
		Kind    Kind   `json:"kind"`
		Schema  string `json:"schema"`
		Table   string `json:"table"`
	}{p.EntryID, p.Kind, p.Schema, p.Table})
	if err != nil {
		return fmt.Errorf("apply entry %d: event data: %w", p.EntryID, err)
	}
	_, err = tx.Exec(ctx, `SELECT `+pgx.Identifier{r.cfg.Schema}.Sanitize()+`.log_event($1::pg_catalog.text, $2::pg_catalog.text, $3::pg_catalog.text, $4::pg_catalog.jsonb, true)`,
		EventAction, p.Schema+"."+p.Table, p.Key, data)
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return fmt.Errorf("apply entry %d: %w", p.EntryID, r.grantMessage(role))
	}
	if err != nil {
		return fmt.Errorf("apply entry %d: record the restored event: %w", p.EntryID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("apply entry %d: commit: %w", p.EntryID, err)
	}
	return nil
}

// checkEventGrant fails unless the role may call the bridge's log_event.
// It reads the catalog, never the function by name, so that a missing
// USAGE on the schema is reported rather than raised.
func (r *Restorer) checkEventGrant(ctx context.Context, q Querier) (role string, err error) {
	var exists, allowed bool
	err = q.QueryRow(ctx, `SELECT current_user::text, f.oid IS NOT NULL,
			coalesce(pg_catalog.has_function_privilege(f.oid, 'EXECUTE') AND pg_catalog.has_schema_privilege(f.pronamespace, 'USAGE'), false)
		FROM (SELECT 1) AS one
		LEFT JOIN (SELECT p.oid, p.pronamespace FROM pg_catalog.pg_proc p
			JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname = $1 AND p.proname = 'log_event'
			  AND p.proargtypes = '25 25 25 3802 16'::pg_catalog.oidvector) AS f ON true`, r.cfg.Schema).Scan(&role, &exists, &allowed)
	switch {
	case err != nil:
		return "", fmt.Errorf("check the grant on log_event: %w", err)
	case !exists:
		return role, fmt.Errorf("%w: the source database has no %s.log_event(text, text, text, jsonb, boolean): install the context bridge with walscribe setup (sink.schema %q)",
			ErrEventNotAllowed, pgx.Identifier{r.cfg.Schema}.Sanitize(), r.cfg.Schema)
	case !allowed:
		return role, r.grantMessage(role)
	}
	return role, nil
}

// grantMessage says what to grant role so that it may call log_event.
func (r *Restorer) grantMessage(role string) error {
	return fmt.Errorf("role %s %w: %s.log_event is for members of %s: run, as a superuser or the trail's owner, GRANT %s TO %s",
		pgx.Identifier{role}.Sanitize(), ErrEventNotAllowed, pgx.Identifier{r.cfg.Schema}.Sanitize(), r.cfg.AppRole,
		pgx.Identifier{r.cfg.AppRole}.Sanitize(), pgx.Identifier{role}.Sanitize())
}

// rowState runs a check statement (Plan.Check, or its unlocked form) and
// says how the row differs from what the entry expects: nothing when it
// is as expected, CodeChangedSince refusals (one per column that changed)
// or a CodeConversion one otherwise.
func rowState(ctx context.Context, q Querier, st Statement, p *Plan) ([]Refusal, error) {
	table := qualified(p.Schema, p.Table)
	if p.Kind == RestoreDelete {
		var exists bool
		if err := q.QueryRow(ctx, st.SQL, st.Args...).Scan(&exists); err != nil {
			return conversion(err)
		}
		if exists {
			return []Refusal{{Code: CodeChangedSince, Reason: fmt.Sprintf("a row with key %s exists in %s now: it was inserted again since the delete", p.Key, table)}}, nil
		}
		return nil, nil
	}
	var same []bool
	err := q.QueryRow(ctx, st.SQL, st.Args...).Scan(&same)
	if errors.Is(err, pgx.ErrNoRows) {
		return []Refusal{{Code: CodeChangedSince, Reason: fmt.Sprintf("no row with key %s is in %s now: it was deleted, or its key changed, since the entry", p.Key, table)}}, nil
	}
	if err != nil {
		return conversion(err)
	}
	what := "update"
	if p.Kind == UndoInsert {
		what = "insert"
	}
	var refs []Refusal
	for i, ok := range same {
		if !ok && i < len(p.compare) {
			col := p.compare[i]
			refs = append(refs, Refusal{Code: CodeChangedSince, Column: col,
				Reason: fmt.Sprintf("row %s of %s changed since the %s: column %s no longer holds the value the %s left", p.Key, table, what, quoteName(col), what)})
		}
	}
	return refs, nil
}

// conversion turns the server's refusal of a stored value (a data
// exception, a domain's constraint, a type gone) into a refusal; other
// errors are returned.
func conversion(err error) ([]Refusal, error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23") ||
		pgErr.Code == "42704" || pgErr.Code == "42804" || pgErr.Code == "42846") {
		return []Refusal{{Code: CodeConversion, Reason: "a stored value does not convert to its column's type now: " + pgErr.Message}}, nil
	}
	return nil, err
}

// probe checks the row while planning, in a transaction (or savepoint) of
// its own that is rolled back when src can begin one.
func (r *Restorer) probe(ctx context.Context, src Querier, p *Plan) error {
	q := src
	if b, ok := src.(Beginner); ok {
		tx, err := b.Begin(ctx)
		if err != nil {
			return fmt.Errorf("check the row: begin: %w", err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) // a read-only check: nothing to keep
		q = tx
	}
	refs, err := rowState(ctx, q, p.probe, p)
	if err != nil {
		return fmt.Errorf("check the row: %w", err)
	}
	p.Refusals = append(p.Refusals, refs...)
	return nil
}
