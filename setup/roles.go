package setup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/migrations"
)

// Roles are the roles setup creates and grants to (config roles.*). The
// daemon's own role is not among them: it is the user of its connection
// strings, and is given only what it needs.
type Roles struct {
	Owner  string // NOLOGIN; owns the audit schema and everything in it
	Reader string // may read the trail
	App    string // may call set_context and log_event
	// RevokeEmitMessage: revoke pg_logical_emit_message from PUBLIC in the
	// source database (granting it to Owner), so that only walscribe's
	// functions put messages into the stream.
	RevokeEmitMessage bool
}

// DefaultRoles are the roles of the default configuration.
func DefaultRoles() Roles {
	return Roles{Owner: "walscribe_owner", Reader: "walscribe_reader", App: "walscribe_app", RevokeEmitMessage: true}
}

func (r Roles) orDefault() Roles {
	if r.Owner == "" {
		return DefaultRoles()
	}
	return r
}

// ErrRoles means setup cannot create or become the roles it needs; the
// message says what a superuser must run.
var ErrRoles = errors.New("the roles walscribe needs are not in place")

// errNotOwner: this role may not act as the owner. setup then changes
// nothing the owner owns, and goes on only if nothing there needs a change.
var errNotOwner = errors.New("this role cannot act as the trail's owner")

// EnsureRoles creates the owner, reader and application roles that do not
// exist, as NOLOGIN roles, and checks that the owner is neither a superuser
// nor able to log in. It returns what it created and what to warn about.
func EnsureRoles(ctx context.Context, conn *pgx.Conn, r Roles) (created, warnings []string, err error) {
	var missing []string
	for _, name := range []string{r.Owner, r.Reader, r.App} {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, name).Scan(&exists); err != nil {
			return nil, nil, fmt.Errorf("read roles: %w", err)
		}
		if exists {
			continue
		}
		_, err := conn.Exec(ctx, `CREATE ROLE `+pgx.Identifier{name}.Sanitize()+` NOLOGIN`)
		switch {
		case err == nil:
			created = append(created, name)
		case pg.Is(err, "42710"), pg.Is(err, "23505"): // created meanwhile, by a setup on another database
		case pg.Is(err, "42501"):
			missing = append(missing, name)
		default:
			return created, nil, fmt.Errorf("create role %s: %w", name, err)
		}
	}
	if len(missing) > 0 {
		var stmts []string
		for _, name := range missing {
			stmts = append(stmts, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" NOLOGIN;")
		}
		return created, nil, fmt.Errorf("%w: this role may not create roles: run setup as a superuser, or run as one: %s", ErrRoles, strings.Join(stmts, " "))
	}
	var super, login bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = $1`, r.Owner).Scan(&super, &login); err != nil {
		return created, nil, fmt.Errorf("read role %s: %w", r.Owner, err)
	}
	if super {
		return created, nil, fmt.Errorf("%w: role %s (roles.owner) is a superuser: the owner of the trail must be an ordinary NOLOGIN role; run ALTER ROLE %s NOSUPERUSER, or choose another name",
			ErrRoles, r.Owner, pgx.Identifier{r.Owner}.Sanitize())
	}
	if login {
		warnings = append(warnings, fmt.Sprintf("role %s (roles.owner) can log in: nobody should; run ALTER ROLE %s NOLOGIN", r.Owner, pgx.Identifier{r.Owner}.Sanitize()))
	}
	return created, warnings, nil
}

// knownRelations and knownFunctions are what walscribe creates in its
// schema (the partitions of entries besides), in this version or an earlier
// one.
var (
	knownRelations = []string{"entries", "checkpoints", "rules", "gaps", "schema_migrations", "bridge_emits", "bridge_key_a", "bridge_key_b", "capture_patterns", "partition_truncates", "integrity_leaves", "integrity_checkpoints", "prunes", "own_entries", "exports", "api_tokens", "api_token_revocations", "daily_days", "daily_counts"}
	knownFunctions = []string{"reject_change", "ensure_partitions", "current_context", "emit_context", "set_context", "log_event", "capture_table", "capture_new_tables"}
)

// PrepareSchema creates schema owned by owner, or gives it to owner with
// every table, sequence and function of walscribe's in it that is not
// owner's yet. It refuses, changing nothing, a schema that holds objects
// walscribe does not create and owner does not own (sink.schema set to an
// application's schema, say): giving them to owner would hand them to the
// trail's owner. Objects whose owner this role may not act for are left,
// and returned as warnings.
func PrepareSchema(ctx context.Context, conn *pgx.Conn, schema, owner string) (warnings []string, err error) {
	s, o := pgx.Identifier{schema}.Sanitize(), pgx.Identifier{owner}.Sanitize()
	rows, err := conn.Query(ctx, `
		SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
		       format('%I.%I', n.nspname, c.relname), pg_has_role(c.relowner, 'USAGE'),
		       c.relname = ANY($3) OR (c.relispartition AND pg_partition_root(c.oid) = (SELECT e.oid FROM pg_class e WHERE e.relnamespace = n.oid AND e.relname = 'entries'))
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f') AND c.relowner <> $2::regrole
		UNION ALL
		SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
		       p.oid::regprocedure::text, pg_has_role(p.proowner, 'USAGE'), p.prokind = 'f' AND p.proname = ANY($4)
		  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		 WHERE n.nspname = $1 AND p.proowner <> $2::regrole
		 ORDER BY 2`, schema, owner, knownRelations, knownFunctions)
	if err != nil {
		return nil, fmt.Errorf("read what schema %q holds: %w", schema, err)
	}
	type object struct {
		kind, name string
		may, known bool
	}
	objects, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (object, error) {
		var o object
		return o, r.Scan(&o.kind, &o.name, &o.may, &o.known)
	})
	if err != nil {
		return nil, fmt.Errorf("read what schema %q holds: %w", schema, err)
	}
	var foreign []string
	for _, obj := range objects {
		if !obj.known {
			foreign = append(foreign, strings.ToLower(obj.kind)+" "+obj.name)
		}
	}
	if len(foreign) > 0 {
		return nil, fmt.Errorf("schema %q holds objects walscribe does not create (%s): walscribe gives its schema and what is in it to %s, and will not give these; set sink.schema to a schema of walscribe's own, or move them out",
			schema, strings.Join(foreign, ", "), owner)
	}
	var exists, owned bool
	if err := conn.QueryRow(ctx, `SELECT count(*) > 0, coalesce(bool_or(nspowner = $2::regrole), false) FROM pg_namespace WHERE nspname = $1`,
		schema, owner).Scan(&exists, &owned); err != nil {
		return nil, fmt.Errorf("read schema %q: %w", schema, err)
	}
	switch {
	case !exists:
		if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+s+` AUTHORIZATION `+o); err != nil {
			return nil, fmt.Errorf("create schema %q owned by %s: %w", schema, owner, hint(err, owner))
		}
	case !owned:
		if _, err := conn.Exec(ctx, `ALTER SCHEMA `+s+` OWNER TO `+o); err != nil {
			return nil, fmt.Errorf("give schema %q to %s: %w", schema, owner, hint(err, owner))
		}
	}
	for _, obj := range objects {
		if !obj.may {
			warnings = append(warnings, fmt.Sprintf("%s %s is not owned by %s and this role may not give it: run setup as a superuser",
				strings.ToLower(obj.kind), obj.name, owner))
			continue
		}
		if _, err := conn.Exec(ctx, `ALTER `+obj.kind+` `+obj.name+` OWNER TO `+o); err != nil {
			return warnings, fmt.Errorf("give %s %s to %s: %w", strings.ToLower(obj.kind), obj.name, owner, hint(err, owner))
		}
	}
	return warnings, nil
}

// hint adds to a permission error what lets this role do it.
func hint(err error, owner string) error {
	if pg.Is(err, "42501") {
		return fmt.Errorf("%w (run setup as a superuser, or GRANT %s TO the role that runs it)", err, pgx.Identifier{owner}.Sanitize())
	}
	return err
}

// AsOwner runs fn with conn acting as owner (SET ROLE), so that what fn
// creates belongs to owner and nothing owner may have redefined runs with
// this role's rights, then goes back to this role.
func AsOwner(ctx context.Context, conn *pgx.Conn, owner string, fn func() error) (err error) {
	if _, err := conn.Exec(ctx, `SET ROLE `+pgx.Identifier{owner}.Sanitize()); err != nil {
		if pg.Is(err, "42501") {
			return fmt.Errorf("%w (%w %s): run setup as a superuser (--admin-dsn), or run as one: GRANT %s TO %s",
				ErrRoles, errNotOwner, owner, pgx.Identifier{owner}.Sanitize(), pgx.Identifier{conn.Config().User}.Sanitize())
		}
		return fmt.Errorf("act as %s: %w", owner, err)
	}
	defer func() {
		if _, rerr := conn.Exec(ctx, `RESET ROLE`); rerr != nil && err == nil {
			err = fmt.Errorf("go back from %s: %w", owner, rerr)
		}
	}()
	return fn()
}

// grantTrail gives writers what the daemon needs on the trail (read its
// progress, append entries, create the month partitions through
// ensure_partitions) and reader what auditors need (read it), and nothing
// to anyone else. It runs as the owner.
func grantTrail(ctx context.Context, conn *pgx.Conn, schema string, r Roles, writers []string) error {
	s := pgx.Identifier{schema}.Sanitize()
	idents := func(names []string) string {
		var out []string
		for _, n := range names {
			out = append(out, pgx.Identifier{n}.Sanitize())
		}
		return strings.Join(out, ", ")
	}
	trail := s + ".entries, " + s + ".checkpoints, " + s + ".rules, " + s + ".gaps, " + s + ".integrity_leaves, " + s + ".integrity_checkpoints, " + s + ".own_entries, " + s + ".exports, " + s + ".api_tokens, " + s + ".api_token_revocations"
	stmts := []string{
		`REVOKE ALL ON SCHEMA ` + s + ` FROM PUBLIC`,
		`REVOKE ALL ON ALL TABLES IN SCHEMA ` + s + ` FROM PUBLIC`,
		`REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ` + s + ` FROM PUBLIC`,
		`ALTER DEFAULT PRIVILEGES IN SCHEMA ` + s + ` REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC`,
		`GRANT USAGE ON SCHEMA ` + s + ` TO ` + idents(append([]string{r.Reader}, writers...)),
		`GRANT SELECT ON ` + trail + `, ` + s + `.schema_migrations TO ` + idents([]string{r.Reader}),
		`GRANT EXECUTE ON FUNCTION ` + s + `.retention_leaves(), ` + s + `.retention_period(text) TO ` + idents(append([]string{r.Reader}, writers...)),
		// Written only by the retention functions, which record each purge.
		`GRANT SELECT ON ` + s + `.prunes TO ` + idents(append([]string{r.Reader}, writers...)),
		`GRANT SELECT ON ` + s + `.daily_days, ` + s + `.daily_counts TO ` + idents([]string{r.Reader}),
	}
	if len(writers) > 0 {
		stmts = append(stmts,
			`GRANT SELECT, INSERT ON `+trail+` TO `+idents(writers),
			// Derived counts: written, and deleted when a purge makes them
			// stale, by the daemon.
			`GRANT SELECT, INSERT, DELETE ON `+s+`.daily_days, `+s+`.daily_counts TO `+idents(writers),
			`GRANT SELECT ON `+s+`.schema_migrations TO `+idents(writers),
			`GRANT EXECUTE ON FUNCTION `+s+`.ensure_partitions(timestamptz, timestamptz, text[]) TO `+idents(writers),
			// Expired entries go only through these two, which record
			// each purge in prunes themselves.
			`GRANT EXECUTE ON FUNCTION `+s+`.expire_leaf(text, bigint, jsonb, bytea, bytea, text), `+
				s+`.expire_rows(text, text, timestamptz, text[], bigint[], bigint, jsonb, bytea, text) TO `+idents(writers))
	}
	for _, stmt := range stmts {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("grant on schema %q: %s: %w", schema, stmt, err)
		}
	}
	return nil
}

// SinkConfig is what PrepareSink needs.
type SinkConfig struct {
	Schema string
	Roles  Roles
	// Writers are the roles the daemon writes the trail as (the user of
	// sink.dsn); a superuser or the owner among them needs no grant.
	Writers []string
	// IPIndex creates the index that serves filters on the entries' ip
	// (sink.ip_index). Setup never drops it.
	IPIndex bool
}

// PrepareSink makes the audit schema in the database of conn: the roles,
// the schema owned by the owner, its migrations applied as the owner, the
// months around now created, and the grants. conn must be a superuser or an
// admin that may create roles and act as the owner. It returns the
// migrations applied and what to warn about.
func PrepareSink(ctx context.Context, conn *pgx.Conn, cfg SinkConfig) (applied []int, warnings []string, err error) {
	r := cfg.Roles.orDefault()
	_, warnings, err = EnsureRoles(ctx, conn, r)
	if err != nil {
		return nil, warnings, err
	}
	w, err := PrepareSchema(ctx, conn, cfg.Schema, r.Owner)
	warnings = append(warnings, w...)
	if err != nil {
		return nil, warnings, err
	}
	writers, w, err := writerRoles(ctx, conn, r, cfg.Writers)
	warnings = append(warnings, w...)
	if err != nil {
		return nil, warnings, err
	}
	err = AsOwner(ctx, conn, r.Owner, func() error {
		var err error
		if applied, err = migrations.Apply(ctx, conn, cfg.Schema); err != nil {
			return fmt.Errorf("audit schema %q: %w", cfg.Schema, err)
		}
		// The months the sink writes first exist before it starts, so that
		// its first batches do no DDL.
		now := time.Now().UTC()
		if _, err := conn.Exec(ctx, `SELECT `+pgx.Identifier{cfg.Schema}.Sanitize()+`.ensure_partitions($1, $2, $3)`,
			now.AddDate(0, -1, 0), now.AddDate(0, 2, 0), []string{"default"}); err != nil {
			return fmt.Errorf("audit schema %q: create partitions: %w", cfg.Schema, err)
		}
		if cfg.IPIndex {
			// A partial B-tree: what one address or network did, without
			// reading the whole window; it costs every entry written.
			if _, err := conn.Exec(ctx, `CREATE INDEX IF NOT EXISTS entries_ip_idx ON `+pgx.Identifier{cfg.Schema}.Sanitize()+`.entries (ip) WHERE ip IS NOT NULL`); err != nil {
				return fmt.Errorf("audit schema %q: create the ip index (sink.ip_index): %w", cfg.Schema, err)
			}
		}
		return grantTrail(ctx, conn, cfg.Schema, r, writers)
	})
	if err == nil {
		var guarded bool
		if guarded, err = InstallGuard(ctx, conn, cfg.Schema, r.Owner); err != nil {
			return applied, warnings, err
		}
		if !guarded {
			warnings = append(warnings, fmt.Sprintf("audit schema %q: not guarded against DDL that disables its triggers or detaches its partitions (event triggers need a superuser: run setup with --admin-sink-dsn or --admin-dsn once)", cfg.Schema))
		}
	}
	if errors.Is(err, errNotOwner) {
		// A role that is not the owner's (the daemon's own, in an init
		// container) may run setup to check: it passes when nothing the
		// owner owns needs a change.
		if lack := sinkLacks(ctx, conn, cfg.Schema, r, writers); lack != "" {
			return nil, warnings, fmt.Errorf("audit schema %q: %s, and %w", cfg.Schema, lack, err)
		}
		return nil, warnings, nil
	}
	return applied, warnings, err
}

// sinkLacks says what the audit schema lacks that setup run by the owner
// would do ("" for nothing): migrations, or grants to writers and reader.
func sinkLacks(ctx context.Context, conn *pgx.Conn, schema string, r Roles, writers []string) string {
	v, err := migrations.Current(ctx, conn, schema)
	if err != nil {
		return fmt.Sprintf("its version cannot be read (%v)", err)
	}
	if v < migrations.Latest() {
		return fmt.Sprintf("it is at version %d, this walscribe needs %d", v, migrations.Latest())
	}
	entries := pgx.Identifier{schema, "entries"}.Sanitize()
	fn := pgx.Identifier{schema, "ensure_partitions"}.Sanitize() + "(timestamptz, timestamptz, text[])"
	for _, w := range writers {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT has_table_privilege($1, $2, 'INSERT') AND has_function_privilege($1, $3, 'EXECUTE')`, w, entries, fn).Scan(&ok); err != nil || !ok {
			return fmt.Sprintf("role %s may not append to it yet", w)
		}
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT has_table_privilege($1, $2, 'SELECT')`, r.Reader, entries).Scan(&ok); err != nil || !ok {
		return fmt.Sprintf("role %s may not read it yet", r.Reader)
	}
	return ""
}

// writerRoles returns the daemon's roles that need grants (not superusers,
// not the owner), with warnings for roles that hold more than they should.
// A role that does not exist is an error that says how to create it.
func writerRoles(ctx context.Context, conn *pgx.Conn, r Roles, names []string) (need, warnings []string, err error) {
	for _, name := range names {
		if name == "" || slices.Contains(need, name) {
			continue
		}
		var super, member bool
		err := conn.QueryRow(ctx, `SELECT rolsuper, pg_has_role(oid, $2::regrole, 'MEMBER') FROM pg_roles WHERE rolname = $1`, name, r.Owner).Scan(&super, &member)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil, warnings, fmt.Errorf("%w: role %s, the daemon's (the user of its connection string), does not exist: run CREATE ROLE %s LOGIN REPLICATION PASSWORD '...'",
				ErrRoles, name, pgx.Identifier{name}.Sanitize())
		case err != nil:
			return nil, warnings, fmt.Errorf("read role %s: %w", name, err)
		case super:
			warnings = append(warnings, fmt.Sprintf("the daemon connects as %s, a superuser: give it a role of its own that may only append to the trail (docs/operations.md, \"Roles and privileges\")", name))
			continue
		case member:
			warnings = append(warnings, fmt.Sprintf("the daemon's role %s is a member of %s and may redefine the trail's functions: run REVOKE %s FROM %s",
				name, r.Owner, pgx.Identifier{r.Owner}.Sanitize(), pgx.Identifier{name}.Sanitize()))
			if name == r.Owner {
				continue
			}
		}
		need = append(need, name)
	}
	return need, warnings, nil
}

// emitMessage returns pg_logical_emit_message's signatures on this server,
// for GRANT and REVOKE (two up to PostgreSQL 16; 17 replaced them with ones
// taking a flush flag), and whether PUBLIC may call any of them.
func emitMessage(ctx context.Context, conn *pgx.Conn) (fns string, public bool, err error) {
	err = conn.QueryRow(ctx, `SELECT string_agg(format('pg_catalog.%I(%s)', p.proname, pg_get_function_identity_arguments(p.oid)), ', ' ORDER BY p.oid),
			coalesce(bool_or(has_function_privilege('public', p.oid, 'EXECUTE')), false)
		FROM pg_proc p WHERE p.proname = 'pg_logical_emit_message' AND p.pronamespace = 'pg_catalog'::regnamespace`).Scan(&fns, &public)
	if err != nil {
		return "", false, fmt.Errorf("read the privileges of pg_logical_emit_message: %w", err)
	}
	return fns, public, nil
}

// restrictMessages revokes pg_logical_emit_message from PUBLIC and grants
// it to the owner, whose functions emit the bridge's messages; with
// RevokeEmitMessage false it grants it back to PUBLIC. Only a superuser
// may; for other roles it returns a warning saying what to run.
func restrictMessages(ctx context.Context, conn *pgx.Conn, r Roles) (warning string, err error) {
	fns, public, err := emitMessage(ctx, conn)
	if err != nil {
		return "", err
	}
	var stmt string
	if r.RevokeEmitMessage {
		stmt = `REVOKE EXECUTE ON FUNCTION ` + fns + ` FROM PUBLIC; GRANT EXECUTE ON FUNCTION ` + fns + ` TO ` + pgx.Identifier{r.Owner}.Sanitize()
	} else {
		stmt = `GRANT EXECUTE ON FUNCTION ` + fns + ` TO PUBLIC`
	}
	var super bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil {
		return "", fmt.Errorf("read role: %w", err)
	}
	if !super {
		if r.RevokeEmitMessage && public {
			return "every role may still call pg_logical_emit_message and write messages walscribe reads: run setup as a superuser, or run as one: " + stmt, nil
		}
		return "", nil
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return "", fmt.Errorf("privileges of pg_logical_emit_message: %w", err)
	}
	return "", nil
}
