-- The guard of the audit schema, installed by walscribe setup in the sink
-- database when it runs as a superuser (event triggers need one).
-- Append-only triggers stop applications and mistakes; these event
-- triggers (ENABLE ALWAYS) also refuse, to everyone but walscribe's owner
-- role (its migrations, its partition function), the DDL that would take
-- them out of the way or hide rows: DISABLE TRIGGER, DETACH PARTITION, SET
-- UNLOGGED, OWNER TO, row level security, and rules, policies and triggers
-- of others. A superuser can still drop these event triggers; the integrity
-- log then tells what was changed (walscribe verify).
--
-- The functions are not SECURITY DEFINER: they run as the role whose DDL
-- they check (current_user is who acts), read only the catalog, and raise.

-- Every role's DDL runs the guard, which reads what it guards.
GRANT USAGE ON SCHEMA walscribe_capture TO PUBLIC;

CREATE TABLE IF NOT EXISTS walscribe_capture.guarded_schemas (
    schema_name text PRIMARY KEY,
    owner       text NOT NULL -- the role that may change the schema's tables
);
REVOKE ALL ON walscribe_capture.guarded_schemas FROM PUBLIC;
GRANT SELECT ON walscribe_capture.guarded_schemas TO PUBLIC;

-- audit_schema_problem says what is wrong with a guarded schema, or NULL.
CREATE OR REPLACE FUNCTION walscribe_capture.audit_schema_problem(sch text, owner text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(
        (SELECT format('%I.%I is owned by %s, not by %s (ALTER ... OWNER)', sch, c.relname, c.relowner::regrole, owner)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = sch AND c.relkind IN ('r', 'p') AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = owner) LIMIT 1),
        (SELECT format('%I.%I is unlogged (SET UNLOGGED)', sch, c.relname)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = sch AND c.relkind IN ('r', 'p') AND c.relpersistence <> 'p' LIMIT 1),
        (SELECT format('%I.%I has row level security (ENABLE ROW LEVEL SECURITY)', sch, c.relname)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = sch AND c.relkind IN ('r', 'p') AND (c.relrowsecurity OR c.relforcerowsecurity) LIMIT 1),
        (SELECT format('%I.%I is no longer a partition of %I.entries (DETACH PARTITION)', sch, c.relname, sch)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = sch AND c.relkind IN ('r', 'p') AND c.relname LIKE 'entries\_%' AND NOT c.relispartition LIMIT 1),
        (SELECT format('%s, a partition of %I.entries, is not in %I (SET SCHEMA)', p.relid::regclass, sch, sch)
           FROM pg_partition_tree(to_regclass(format('%I.entries', sch))) p JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname <> sch LIMIT 1),
        (SELECT format('%I.%I is missing (SET SCHEMA, RENAME)', sch, t.name)
           FROM (VALUES ('entries'), ('checkpoints'), ('gaps'), ('integrity_leaves'), ('integrity_checkpoints')) t(name)
          WHERE to_regclass(format('%I.%I', sch, t.name)) IS NULL LIMIT 1),
        (SELECT format('trigger %s on %I.%I does not run %I.reject_change()', g.tgname, sch, c.relname, sch)
           FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = sch AND g.tgname IN ('append_only', 'append_only_truncate')
            AND g.tgfoid <> to_regprocedure(format('%I.reject_change()', sch)) LIMIT 1),
        (SELECT format('trigger %s on %I.%I is not enabled always (DISABLE TRIGGER)', g.tgname, sch, c.relname)
           FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = sch AND g.tgname IN ('append_only', 'append_only_truncate') AND g.tgenabled <> 'A' LIMIT 1),
        (SELECT format('trigger %s on %I.%I is not walscribe''s', g.tgname, sch, c.relname)
           FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = sch AND NOT g.tgisinternal AND g.tgname NOT IN ('append_only', 'append_only_truncate') LIMIT 1),
        (SELECT format('%I.%I has a rule (CREATE RULE)', sch, c.relname)
           FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = sch AND c.relkind IN ('r', 'p') LIMIT 1),
        (SELECT format('%I.%I has a policy (CREATE POLICY)', sch, c.relname)
           FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = sch LIMIT 1),
        (SELECT format('%I.%I lacks its append-only trigger %s (DROP TRIGGER)', sch, c.relname, t.name)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                LATERAL (VALUES ('append_only'), ('append_only_truncate')) t(name)
          WHERE n.nspname = sch
            AND (c.relname IN ('checkpoints', 'gaps', 'integrity_leaves', 'integrity_checkpoints')
                 OR c.relname = 'entries' AND t.name = 'append_only'
                 OR c.relkind = 'r' AND c.relname LIKE 'entries\_%' AND t.name = 'append_only_truncate')
            AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = t.name) LIMIT 1))
$$;

-- guard_audit refuses, unless the schema's owner role runs it, a command
-- that creates, changes or drops a function, trigger, rule or policy of a
-- guarded schema, drops anything in it, or leaves it weakened (an ALTER
-- TABLE of one of its tables, or of a table moved out of it: a partition
-- of its entries, or a table with its append-only trigger).
CREATE OR REPLACE FUNCTION walscribe_capture.guard_audit() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g record;
    problem text;
BEGIN
    FOR g IN SELECT schema_name, owner FROM walscribe_capture.guarded_schemas LOOP
        CONTINUE WHEN current_user = g.owner;
        problem := NULL;
        IF TG_EVENT = 'sql_drop' THEN
            SELECT format('%s %s is walscribe''s (DROP)', d.object_type, d.object_identity) INTO problem
              FROM pg_event_trigger_dropped_objects() d
             WHERE d.schema_name = g.schema_name
                OR d.object_type IN ('trigger', 'rule', 'policy')
                   AND d.object_identity LIKE '% on ' || quote_ident(g.schema_name) || '.%'
             LIMIT 1;
        ELSIF TG_TAG = 'ALTER TABLE' THEN
            IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() d
                        WHERE d.schema_name = g.schema_name
                           OR d.classid = 'pg_class'::regclass
                              AND (to_regclass(format('%I.entries', g.schema_name)) IN (SELECT pg_partition_root(d.objid))
                                   OR EXISTS (SELECT 1 FROM pg_trigger x WHERE x.tgrelid = d.objid
                                               AND x.tgfoid = to_regprocedure(format('%I.reject_change()', g.schema_name))))) THEN
                problem := walscribe_capture.audit_schema_problem(g.schema_name, g.owner);
            END IF;
        ELSE
            -- A function is in the schema; a trigger, rule or policy has
            -- its table's.
            SELECT format('%s %s is walscribe''s (%s)', d.object_type, d.object_identity, d.command_tag) INTO problem
              FROM pg_event_trigger_ddl_commands() d
             WHERE d.schema_name = g.schema_name
                OR g.schema_name = (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                     WHERE c.oid = CASE d.classid
                                         WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = d.objid)
                                         WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = d.objid)
                                         WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid)
                                     END)
             LIMIT 1;
        END IF;
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'walscribe: the audit schema % is append-only and tamper-evident: %', g.schema_name, problem
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Only walscribe''s owner role %s changes it (walscribe setup and migrate do). Changes made anyway are found by walscribe verify.', g.owner);
        END IF;
    END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS walscribe_guard_audit;
CREATE EVENT TRIGGER walscribe_guard_audit ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE RULE', 'CREATE POLICY', 'ALTER POLICY', 'CREATE TRIGGER', 'ALTER TRIGGER',
                 'CREATE FUNCTION', 'ALTER FUNCTION', 'CREATE PROCEDURE', 'ALTER PROCEDURE')
    EXECUTE FUNCTION walscribe_capture.guard_audit();
ALTER EVENT TRIGGER walscribe_guard_audit ENABLE ALWAYS;
DROP EVENT TRIGGER IF EXISTS walscribe_guard_audit_drop;
CREATE EVENT TRIGGER walscribe_guard_audit_drop ON sql_drop
    WHEN TAG IN ('DROP TRIGGER', 'DROP RULE', 'DROP POLICY', 'ALTER TABLE', 'DROP TABLE', 'DROP FUNCTION', 'DROP PROCEDURE',
                 'DROP INDEX', 'DROP SEQUENCE', 'DROP VIEW')
    EXECUTE FUNCTION walscribe_capture.guard_audit();
ALTER EVENT TRIGGER walscribe_guard_audit_drop ENABLE ALWAYS;
