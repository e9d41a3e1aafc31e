package setup

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/cdc"
)

//go:embed bridge.sql
var bridgeSQL string

// BridgeTruncates is the bridge's table of partition TRUNCATE reports, in
// the bridge's schema of the source; the publication publishes it, and the
// decoder reads its rows as reports, never as changes.
const BridgeTruncates = "partition_truncates"

// bridgeTrigger is the name of the context trigger on each tracked table.
const bridgeTrigger = "walscribe_context"

// InstallBridge installs the context bridge in the source database: the
// functions in schema (current_context, emit_context, set_context,
// log_event) reading variables named prefix.*, owned by the owner role and
// callable by the application group of r, and a statement-level trigger on
// every tracked table and each of its partitions. Triggers of the bridge
// on tables no longer tracked are dropped. It returns the tables that got a
// trigger and those that lost one, and what to warn about.
func InstallBridge(ctx context.Context, conn *pgx.Conn, schema, prefix string, r Roles, tables []cdc.Table) (added, removed, warnings []string, err error) {
	r = r.orDefault()
	if _, warnings, err = EnsureRoles(ctx, conn, r); err != nil {
		return nil, nil, warnings, err
	}
	w, err := PrepareSchema(ctx, conn, schema, r.Owner)
	warnings = append(warnings, w...)
	if err != nil {
		return nil, nil, warnings, err
	}
	sql := strings.NewReplacer("{{schema}}", pgx.Identifier{schema}.Sanitize(), "{{schema_raw}}", strings.ReplaceAll(pgx.Identifier{schema}.Sanitize(), "'", "''"), "{{prefix}}", prefix,
		"{{key}}", contextKey(prefix), "{{db_user}}", dbUser, "{{app}}", pgx.Identifier{r.App}.Sanitize()).Replace(bridgeSQL)
	// The functions carry the version of the text that made them, so that
	// a role that may not replace them can tell whether they need it.
	sum := sha256.Sum256([]byte(sql))
	version := "walscribe bridge " + hex.EncodeToString(sum[:8])
	sql += "\nCOMMENT ON FUNCTION " + pgx.Identifier{schema}.Sanitize() + ".emit_context() IS '" + version + "';\n"
	err = AsOwner(ctx, conn, r.Owner, func() error {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("install the context functions in schema %q: %w", schema, err)
		}
		return nil
	})
	if errors.Is(err, errNotOwner) {
		var have *string
		if qerr := conn.QueryRow(ctx, `SELECT obj_description(p.oid, 'pg_proc') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname = $1 AND p.proname = 'emit_context' AND p.pronargs = 0`, schema).Scan(&have); qerr != nil && !errors.Is(qerr, pgx.ErrNoRows) {
			return nil, nil, warnings, fmt.Errorf("read the context functions: %w", qerr)
		}
		if have == nil || *have != version {
			return nil, nil, warnings, fmt.Errorf("the context functions in schema %q are missing or from another version of walscribe, and %w", schema, err)
		}
		err = nil
	}
	if err != nil {
		return nil, nil, warnings, err
	}
	warning, err := restrictMessages(ctx, conn, r)
	if warning != "" {
		warnings = append(warnings, warning)
	}
	if err != nil {
		return nil, nil, warnings, err
	}
	added, removed, err = installTriggers(ctx, conn, schema, tables)
	return added, removed, warnings, err
}

// dbUser is the SQL expression of the role that writes, as the bridge's
// SECURITY DEFINER functions see it: the role SET ROLE chose, else the role
// that logged in.
const dbUser = `(CASE current_setting('role') WHEN 'none' THEN session_user::text ELSE current_setting('role') END)`

// installTriggers puts the bridge's trigger on every tracked table and
// partition, repairs those that are not the bridge's, and drops it from
// tables no longer tracked.
func installTriggers(ctx context.Context, conn *pgx.Conn, schema string, tables []cdc.Table) (added, removed []string, err error) {
	fn := pgx.Identifier{schema, "emit_context"}.Sanitize()
	var want []string
	for _, t := range tables {
		rows, err := conn.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.oid = $1::regclass OR c.oid IN (SELECT relid FROM pg_partition_tree($1::regclass))
			ORDER BY 1`, t.Ident())
		if err != nil {
			return nil, nil, fmt.Errorf("partitions of %s: %w", t, err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, nil, fmt.Errorf("partitions of %s: %w", t, err)
		}
		want = append(want, names...)
	}
	have, err := bridgedTables(ctx, conn, "")
	if err != nil {
		return nil, nil, err
	}
	notGenuine, err := bridgedTables(ctx, conn, schema)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range want {
		if slices.Contains(have, name) && !slices.Contains(notGenuine, name) {
			continue
		}
		if slices.Contains(have, name) { // disabled, skippable, or replaced by another: made ours again
			if _, err := conn.Exec(ctx, `CREATE OR REPLACE TRIGGER `+bridgeTrigger+` BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON `+name+`
				FOR EACH STATEMENT EXECUTE FUNCTION `+fn+`();
				ALTER TABLE `+name+` ENABLE ALWAYS TRIGGER `+bridgeTrigger); err != nil {
				return added, nil, fmt.Errorf("repair the context trigger on %s: %w", name, err)
			}
			continue
		}
		_, err := conn.Exec(ctx, `CREATE OR REPLACE TRIGGER `+bridgeTrigger+` BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON `+name+`
			FOR EACH STATEMENT EXECUTE FUNCTION `+fn+`();
			ALTER TABLE `+name+` ENABLE ALWAYS TRIGGER `+bridgeTrigger)
		if err != nil {
			return added, nil, fmt.Errorf("install the context trigger on %s: %w", name, err)
		}
		added = append(added, name)
	}
	for _, name := range have {
		if slices.Contains(want, name) {
			continue
		}
		if _, err := conn.Exec(ctx, `DROP TRIGGER `+bridgeTrigger+` ON `+name); err != nil {
			return added, removed, fmt.Errorf("remove the context trigger from %s: %w", name, err)
		}
		removed = append(removed, name)
	}
	return added, removed, nil
}

// contextKey is the SQL expression of the context's key: the raw settings
// the bridge reads, each quoted, so that different contexts never share a
// key. prefix is a plain identifier (config checks it).
func contextKey(prefix string) string {
	var parts []string
	for _, v := range []string{"actor_id", "actor", "ip", "user_agent", "request_id", "context"} {
		parts = append(parts, "quote_nullable(current_setting('"+prefix+"."+v+"', true))")
	}
	parts = append(parts, "quote_nullable("+dbUser+")", "quote_nullable(session_user::text)", "quote_nullable(current_setting('application_name', true))")
	return "concat(" + strings.Join(parts, ", ',', ") + ")"
}

// genuineTrigger is the SQL condition that trigger g is the bridge's as
// setup installs it: enabled always, before each statement of the four
// kinds, with no column list and no WHEN condition, running emit_context of
// the schema given as parameter $schemaParam.
func genuineTrigger(schemaParam string) string {
	return `(g.tgenabled = 'A' AND g.tgtype = 62 AND g.tgqual IS NULL AND cardinality(g.tgattr::int2[]) = 0
		AND g.tgfoid = (SELECT p.oid FROM pg_proc p JOIN pg_namespace pn ON pn.oid = p.pronamespace
			WHERE pn.nspname = ` + schemaParam + ` AND p.proname = 'emit_context' AND p.pronargs = 0))`
}

// UnguardedTables lists the tables publication publishes (partitions
// included) whose context trigger is missing, disabled, not ENABLE ALWAYS,
// or not the bridge's (another function, a WHEN condition, fewer events):
// their changes arrive without who made them (flagged no_context). setup
// repairs them. schema is the bridge's schema.
func UnguardedTables(ctx context.Context, conn *pgx.Conn, publication, schema string) ([]string, error) {
	// The publication lists the roots of partitioned tables; their
	// partitions need the trigger too. Joined by name, never cast: a table
	// dropped meanwhile drops out instead of failing the query.
	rows, err := conn.Query(ctx, `SELECT DISTINCT format('%I.%I', pn.nspname, pc.relname)
		FROM pg_publication_tables pt
		JOIN pg_namespace n ON n.nspname = pt.schemaname
		JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
		CROSS JOIN LATERAL (SELECT c.oid AS relid UNION SELECT relid FROM pg_partition_tree(c.oid)) part
		JOIN pg_class pc ON pc.oid = part.relid AND pc.relkind IN ('r', 'p')
		JOIN pg_namespace pn ON pn.oid = pc.relnamespace
		WHERE pt.pubname = $1 AND NOT (pt.schemaname = $3 AND pt.tablename = '`+BridgeTruncates+`') AND NOT EXISTS (SELECT 1 FROM pg_trigger g
			WHERE g.tgrelid = pc.oid AND g.tgname = $2 AND `+genuineTrigger("$3")+`)
		ORDER BY 1`, publication, bridgeTrigger, schema)
	if err != nil {
		return nil, fmt.Errorf("read context triggers: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read context triggers: %w", err)
	}
	return names, nil
}

// bridgedTables lists the tables that have a trigger named as the bridge's,
// as quoted schema.table names; with notGenuineIn (the bridge's schema),
// only those whose trigger is not the bridge's as setup installs it.
func bridgedTables(ctx context.Context, conn *pgx.Conn, notGenuineIn string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname)
		FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE g.tgname = $1 AND NOT g.tgisinternal AND ($2 = '' OR NOT `+genuineTrigger("$2")+`) ORDER BY 1`, bridgeTrigger, notGenuineIn)
	if err != nil {
		return nil, fmt.Errorf("read context triggers: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read context triggers: %w", err)
	}
	return names, nil
}
