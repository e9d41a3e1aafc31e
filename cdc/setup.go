package cdc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Table names a tracked table and the config key it came from, so that
// problems can point at the line to change.
type Table struct {
	Schema string
	Name   string
	Key    string // e.g. "tables[2].name"
}

func (t Table) String() string { return t.Schema + "." + t.Name }

// Ident is the table's quoted, qualified name for SQL.
func (t Table) Ident() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// SetupConfig is what preparing the source needs.
type SetupConfig struct {
	Slot        string
	Publication string
	Tables      []Table
	// SinkSchema, when the sink is this database, is never published.
	SinkSchema string
	// SlotTimeout bounds slot creation, which waits for open transactions.
	SlotTimeout time.Duration
}

// Problems is a list of things to fix before walscribe can run, each saying
// what to do.
type Problems []string

func (p Problems) Error() string {
	return "the database is not ready for walscribe:\n  - " + strings.Join(p, "\n  - ")
}

// MinServerVersion is the oldest PostgreSQL supported (pgoutput messages,
// streaming of large transactions).
const MinServerVersion = 140000

// Check reports, all at once, what the server and role lack for cfg: server
// version, wal_level, replication rights, free slots and senders, database
// privileges, and the tracked tables (they exist, the role owns them, they are
// not in the audit schema). It returns nil or Problems.
func Check(ctx context.Context, conn *pgx.Conn, cfg SetupConfig) error {
	var (
		version, maxSlots, usedSlots, maxSenders int
		walLevel, role, db                       string
		super, repl, canCreate, slotExists       bool
		slotPlugin, slotDB                       *string
	)
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('wal_level'),
			current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_replication_slots)::int,
			current_setting('max_wal_senders')::int, current_user::text, current_database()::text,
			r.rolsuper, r.rolreplication, has_database_privilege(current_database(), 'CREATE'),
			s.slot_name IS NOT NULL, s.plugin::text, s.database::text
		FROM pg_roles r LEFT JOIN pg_replication_slots s ON s.slot_name = $1
		WHERE r.rolname = current_user`, cfg.Slot).Scan(
		&version, &walLevel, &maxSlots, &usedSlots, &maxSenders, &role, &db,
		&super, &repl, &canCreate, &slotExists, &slotPlugin, &slotDB)
	if err != nil {
		return fmt.Errorf("read server settings: %w", err)
	}
	var p Problems
	if version < MinServerVersion {
		p = append(p, fmt.Sprintf("PostgreSQL %d.%d is too old: walscribe needs 14 or newer", version/10000, version%10000/100))
	}
	if walLevel != "logical" {
		p = append(p, fmt.Sprintf("wal_level is %q, logical decoding needs \"logical\": run ALTER SYSTEM SET wal_level = 'logical'; then restart PostgreSQL", walLevel))
	}
	if !super && !repl {
		p = append(p, fmt.Sprintf("role %q may not stream changes: run (as a superuser) ALTER ROLE %s REPLICATION;", role, pgx.Identifier{role}.Sanitize()))
	}
	if maxSenders == 0 {
		p = append(p, "max_wal_senders is 0: run ALTER SYSTEM SET max_wal_senders = 10; then restart PostgreSQL")
	}
	if !slotExists && usedSlots >= maxSlots {
		p = append(p, fmt.Sprintf("all %d replication slots are in use: raise max_replication_slots (ALTER SYSTEM SET max_replication_slots = %d; then restart PostgreSQL) or drop an unused one (SELECT pg_drop_replication_slot('name');)", maxSlots, maxSlots+1))
	}
	switch {
	case slotExists && (slotPlugin == nil || *slotPlugin != "pgoutput"):
		p = append(p, fmt.Sprintf("replication slot %q exists but is not a pgoutput logical slot: choose another source.slot or drop it (SELECT pg_drop_replication_slot('%s');)", cfg.Slot, cfg.Slot))
	case slotExists && (slotDB == nil || *slotDB != db):
		// Slot names are server-wide; a slot streams only its own database.
		p = append(p, fmt.Sprintf("replication slot %q belongs to database %q, not %q: choose another source.slot", cfg.Slot, deref(slotDB), db))
	}
	var pubExists, pubAllTables bool
	if err := conn.QueryRow(ctx, `SELECT count(*) > 0, coalesce(bool_or(puballtables), false) FROM pg_publication WHERE pubname = $1`,
		cfg.Publication).Scan(&pubExists, &pubAllTables); err != nil {
		return fmt.Errorf("read publications: %w", err)
	}
	if pubAllTables {
		p = append(p, allTablesProblem(cfg.Publication))
	}
	if !pubExists && !super && !canCreate {
		p = append(p, fmt.Sprintf("role %q may not create the publication: run GRANT CREATE ON DATABASE %s TO %s;", role, pgx.Identifier{db}.Sanitize(), pgx.Identifier{role}.Sanitize()))
	}
	for _, t := range cfg.Tables {
		if cfg.SinkSchema != "" && t.Schema == cfg.SinkSchema {
			p = append(p, fmt.Sprintf("%s: table %s is in the audit schema, which is never audited (it would audit its own writes): remove it", t.Key, t))
			continue
		}
		var exists, owner, ownerSuper, ready bool
		var ownerName string
		err := conn.QueryRow(ctx, `SELECT c.oid IS NOT NULL, coalesce(pg_has_role(c.relowner, 'USAGE'), false),
				coalesce(o.rolname::text, ''), coalesce(o.rolsuper, false),
				coalesce(c.relreplident = 'f' AND EXISTS (SELECT 1 FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
					WHERE p.pubname = $2 AND pr.prrelid = c.oid), false)
			FROM (SELECT to_regclass($1) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid
			LEFT JOIN pg_roles o ON o.oid = c.relowner`, t.Ident(), cfg.Publication).Scan(&exists, &owner, &ownerName, &ownerSuper, &ready)
		if err != nil {
			return fmt.Errorf("look up table %s: %w", t, err)
		}
		switch {
		case ready:
			// Published with REPLICA IDENTITY FULL already: a role that
			// does not own it (the daemon's, checking) has nothing to do.
		case !exists:
			p = append(p, fmt.Sprintf("%s: table %s does not exist: create it, or fix or remove this entry", t.Key, t))
		case !owner && ownerSuper:
			// Membership in a superuser role would let the role become one.
			p = append(p, fmt.Sprintf("%s: role %q must own table %s to set REPLICA IDENTITY FULL and publish it, and its owner %q is a superuser: run ALTER TABLE %s OWNER TO %s; (or to a non-superuser role that %q is a member of), or run setup as a superuser",
				t.Key, role, t, ownerName, t.Ident(), pgx.Identifier{role}.Sanitize(), role))
		case !owner:
			p = append(p, fmt.Sprintf("%s: role %q must own table %s (or be a member of its owner) to set REPLICA IDENTITY FULL and publish it: run GRANT %s TO %s;",
				t.Key, role, t, pgx.Identifier{ownerName}.Sanitize(), pgx.Identifier{role}.Sanitize()))
		}
	}
	if len(p) > 0 {
		return p
	}
	return nil
}

func allTablesProblem(name string) string {
	return fmt.Sprintf("publication %q publishes all tables, which would include the audit schema: drop it (DROP PUBLICATION %s;) or set source.publication to another name",
		name, pgx.Identifier{name}.Sanitize())
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// SetReplicaIdentityFull makes every tracked table, and every partition of a
// partitioned one, send its whole old row on UPDATE and DELETE. It returns the
// tables it changed.
func SetReplicaIdentityFull(ctx context.Context, conn *pgx.Conn, tables []Table) ([]string, error) {
	var changed []string
	for _, t := range tables {
		// pg_partition_tree is empty for a table that is not partitioned.
		rows, err := conn.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relreplident <> 'f'
			  AND (c.oid = $1::regclass OR c.oid IN (SELECT relid FROM pg_partition_tree($1::regclass)))
			ORDER BY c.oid = $1::regclass DESC, 1`, t.Ident())
		if err != nil {
			return changed, fmt.Errorf("replica identity of %s: %w", t, err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return changed, fmt.Errorf("replica identity of %s: %w", t, err)
		}
		for _, name := range names {
			if _, err := conn.Exec(ctx, `ALTER TABLE `+name+` REPLICA IDENTITY FULL`); err != nil {
				return changed, fmt.Errorf("set replica identity full on %s: %w", name, err)
			}
			changed = append(changed, name)
		}
	}
	return changed, nil
}

// EnsurePublication creates the publication, or alters it, so that it
// publishes exactly the tracked tables (inserts, updates, deletes and
// truncates, partitions under their root's name). It returns the tables added
// and removed.
func EnsurePublication(ctx context.Context, conn *pgx.Conn, name string, tables []Table) (added, removed []string, err error) {
	var allTables *bool
	var optionsSet bool
	var version int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return nil, nil, fmt.Errorf("read server version: %w", err)
	}
	// From PostgreSQL 18 the stream carries stored generated columns when
	// the publication asks for them; before, entries say they lack them.
	options := `publish = 'insert, update, delete, truncate', publish_via_partition_root = true`
	if version >= 180000 {
		options += `, publish_generated_columns = stored`
	}
	err = conn.QueryRow(ctx, `SELECT puballtables, pubinsert AND pubupdate AND pubdelete AND pubtruncate AND pubviaroot
			AND ($2 < 180000 OR coalesce(to_jsonb(p) ->> 'pubgencols', '') = 's')
		FROM pg_publication p WHERE pubname = $1`, name, version).Scan(&allTables, &optionsSet)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, fmt.Errorf("read publication %q: %w", name, err)
	}
	if allTables != nil && *allTables {
		return nil, nil, errors.New(allTablesProblem(name))
	}
	want := make([]string, 0, len(tables))
	idents := make([]string, 0, len(tables))
	for _, t := range tables {
		want = append(want, t.String())
		idents = append(idents, t.Ident())
	}
	pub := pgx.Identifier{name}.Sanitize()
	opts := ` WITH (` + options + `)`
	if allTables == nil {
		// No table yet (patterns that match tables created later): a
		// publication of none, which the event trigger adds them to.
		tablesClause := ""
		if len(idents) > 0 {
			tablesClause = ` FOR TABLE ` + strings.Join(idents, ", ")
		}
		if _, err := conn.Exec(ctx, `CREATE PUBLICATION `+pub+tablesClause+opts); err != nil {
			return nil, nil, fmt.Errorf("create publication %q: %w", name, err)
		}
		return want, nil, nil
	}
	have, err := PublishedTables(ctx, conn, name)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range want {
		if !slices.Contains(have, w) {
			added = append(added, w)
		}
	}
	for _, h := range have {
		if !slices.Contains(want, h) {
			removed = append(removed, h)
		}
	}
	if len(added)+len(removed) > 0 {
		stmt := `ALTER PUBLICATION ` + pub + ` SET TABLE ` + strings.Join(idents, ", ")
		if len(idents) == 0 { // SET TABLE takes one table at least: drop them all
			rows, err := conn.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname)
				FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
				JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE p.pubname = $1`, name)
			if err != nil {
				return nil, nil, fmt.Errorf("read publication %q: %w", name, err)
			}
			drop, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return nil, nil, fmt.Errorf("read publication %q: %w", name, err)
			}
			stmt = `ALTER PUBLICATION ` + pub + ` DROP TABLE ` + strings.Join(drop, ", ")
		}
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return nil, nil, fmt.Errorf("alter publication %q: %w", name, err)
		}
	}
	if !optionsSet {
		if _, err := conn.Exec(ctx, `ALTER PUBLICATION `+pub+` SET (`+options+`)`); err != nil {
			return nil, nil, fmt.Errorf("alter publication %q: %w", name, err)
		}
	}
	return added, removed, nil
}

// PublishedTables lists the tables in a publication as "schema.table".
func PublishedTables(ctx context.Context, conn *pgx.Conn, name string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT n.nspname || '.' || c.relname
		FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
		JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.pubname = $1 ORDER BY 1`, name)
	if err != nil {
		return nil, fmt.Errorf("read publication %q: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read publication %q: %w", name, err)
	}
	return out, nil
}
