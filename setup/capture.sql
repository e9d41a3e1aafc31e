-- Capture of tables created later, installed by walscribe setup when it
-- runs as a superuser (event triggers need one). {{schema}}: the audit
-- schema in the source database; {{publication}}: the publication (a
-- literal); {{skip_schema}}: a schema never captured ('' for none).
--
-- The functions run with a superuser's rights, on every CREATE and ALTER
-- TABLE of anyone. So they live in a schema of their own, owned by the
-- superuser, and call nothing outside it and pg_catalog: no other role can
-- redefine anything they run. (The audit schema belongs to the owner role,
-- which may change what is in it.) emit_context is only named, for the
-- triggers they create, never called.

-- The schema walscribe_capture is created (or found owned by a superuser)
-- by setup, in the same transaction. Every role may read the patterns (they are the configuration's), so that
-- a setup run by another role can tell whether they are current.
GRANT USAGE ON SCHEMA walscribe_capture TO PUBLIC;

CREATE TABLE IF NOT EXISTS walscribe_capture.patterns (
    schema_re text    NOT NULL, -- anchored regular expressions made from the configured globs
    table_re  text    NOT NULL,
    exclude   boolean NOT NULL, -- from exclude_tables: always wins
    pattern   text    NOT NULL  -- the configured glob, for people
);
REVOKE ALL ON walscribe_capture.patterns FROM PUBLIC;
GRANT SELECT ON walscribe_capture.patterns TO PUBLIC;

-- capture_table adds a table that matches the configured patterns to the
-- publication in the transaction that creates (or renames, or moves) it,
-- with REPLICA IDENTITY FULL and the context trigger, so that its first
-- rows are captured. A new partition of a published table gets the replica
-- identity and the trigger (it is published through its root). Each step
-- runs only when it is still needed: the ALTER TABLE commands it runs fire
-- the event trigger again, and the nested call, finding nothing left to do,
-- ends the recursion. (No session setting guards it: a session could preset
-- one to keep its tables out.) A context trigger that is not the bridge's
-- (replaced by the table's owner) is put back at the table's next ALTER
-- TABLE; one that is disabled, and a weaker replica identity, are refused
-- before that (refuse_weakening).
CREATE OR REPLACE FUNCTION walscribe_capture.capture_table(rel oid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sch  text;
    tbl  text;
    kind "char";
    persistence "char";
    is_partition boolean;
    published boolean;
BEGIN
    SELECT n.nspname, c.relname, c.relkind, c.relpersistence, c.relispartition
      INTO sch, tbl, kind, persistence, is_partition
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    IF NOT FOUND OR kind NOT IN ('r', 'p') OR persistence <> 'p'
       OR sch IN ('pg_catalog', 'information_schema', {{skip_schema}}) OR sch LIKE 'pg\_%'
       OR sch = 'walscribe_capture' OR (sch = {{schema_lit}} AND tbl = 'partition_truncates') THEN
        RETURN;
    END IF;
    SELECT EXISTS (SELECT 1 FROM pg_publication_tables
                    WHERE pubname = {{publication}} AND schemaname = sch AND tablename = tbl)
        INTO published;
    IF is_partition THEN
        -- Published through its root, or not at all.
        IF NOT EXISTS (SELECT 1 FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
                        WHERE p.pubname = {{publication}} AND pr.prrelid = pg_partition_root(rel)) THEN
            RETURN;
        END IF;
        -- A table captured on its own, then attached: its root publishes it.
        IF EXISTS (SELECT 1 FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
                    WHERE p.pubname = {{publication}} AND pr.prrelid = rel) THEN
            EXECUTE format('ALTER PUBLICATION %I DROP TABLE %s', {{publication}}, rel::regclass);
        END IF;
    ELSIF NOT published THEN
        IF NOT EXISTS (SELECT 1 FROM walscribe_capture.patterns
                        WHERE NOT exclude AND sch ~ schema_re AND tbl ~ table_re)
           OR EXISTS (SELECT 1 FROM walscribe_capture.patterns
                       WHERE exclude AND sch ~ schema_re AND tbl ~ table_re) THEN
            RETURN;
        END IF;
        EXECUTE format('ALTER PUBLICATION %I ADD TABLE %s', {{publication}}, rel::regclass);
    END IF;
    -- The bridge's trigger as setup installs it: before each statement of
    -- the four kinds, no column list, no WHEN condition, emit_context.
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'walscribe_context'
                      AND tgtype = 62 AND tgqual IS NULL AND cardinality(tgattr::int2[]) = 0
                      AND tgfoid = '{{schema}}.emit_context()'::regprocedure) THEN
        EXECUTE format('CREATE OR REPLACE TRIGGER walscribe_context BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s
            FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.emit_context()', rel::regclass);
    END IF;
    -- The replica identity and the trigger's state in one ALTER TABLE: the
    -- event trigger that command fires again refuses a tracked table left
    -- with either not as walscribe needs it.
    IF (SELECT relreplident FROM pg_class WHERE oid = rel) <> 'f'
       OR (SELECT tgenabled FROM pg_trigger WHERE tgrelid = rel AND tgname = 'walscribe_context') <> 'A' THEN
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL, ENABLE ALWAYS TRIGGER walscribe_context', rel::regclass);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION walscribe_capture.capture_table(oid) FROM PUBLIC;

-- refuse_weakening fails an ALTER TABLE that would take a tracked table (a
-- published one, or a partition of one) out of capture: SET UNLOGGED, a replica identity
-- other than FULL (updates and deletes would lose their old row, or the
-- table its key), or the context trigger disabled or not ENABLE ALWAYS
-- (changes would lose who made them). The error names walscribe, the
-- table, and how to stop tracking it instead.
CREATE OR REPLACE FUNCTION walscribe_capture.refuse_weakening(rel oid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ident "char";
    trig  "char";
    persistence "char";
    what  text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
                    WHERE p.pubname = {{publication}} AND pr.prrelid IN (rel, pg_partition_root(rel))) THEN
        RETURN;
    END IF;
    -- The bridge's own trigger (one the table's owner put in its place is
    -- replaced by capture_table instead). A table without it is not
    -- captured yet (an unlogged partition made logged, say): capture_table
    -- sees to it.
    SELECT c.relreplident, c.relpersistence, (SELECT g.tgenabled FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = 'walscribe_context'
                              AND g.tgfoid = '{{schema}}.emit_context()'::regprocedure)
      INTO ident, persistence, trig FROM pg_class c WHERE c.oid = rel;
    IF trig IS NULL THEN
        RETURN;
    END IF;
    IF persistence <> 'p' THEN
        -- PostgreSQL refuses it itself for a table published directly,
        -- not for a partition published through its root.
        what := 'SET UNLOGGED would take it out of logical replication, and its changes out of the trail';
    ELSIF ident <> 'f' THEN
        what := format('REPLICA IDENTITY %s would leave its updates and deletes without the old row',
                       CASE ident WHEN 'd' THEN 'DEFAULT' WHEN 'i' THEN 'USING INDEX' ELSE 'NOTHING' END);
    ELSIF trig <> 'A' THEN
        what := 'the context trigger walscribe_context '
             || CASE trig WHEN 'D' THEN 'disabled' ELSE 'not ENABLE ALWAYS' END
             || ' would leave its changes without who made them';
    ELSE
        RETURN;
    END IF;
    RAISE EXCEPTION 'walscribe audits table %: %', rel::regclass, what
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = format('To stop auditing it, add %s to exclude_tables in walscribe''s configuration and run walscribe setup; then run this command again.', rel::regclass);
END
$$;
REVOKE ALL ON FUNCTION walscribe_capture.refuse_weakening(oid) FROM PUBLIC;

CREATE OR REPLACE FUNCTION walscribe_capture.capture_new_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    d record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = {{publication}}) THEN
        RETURN; -- walscribe was removed from this database
    END IF;
    -- First what is refused: outside the block below, whose errors become
    -- warnings.
    FOR r IN SELECT DISTINCT objid FROM pg_event_trigger_ddl_commands()
              WHERE classid = 'pg_class'::regclass AND command_tag = 'ALTER TABLE' AND object_type IN ('table', 'table column') LOOP
        PERFORM walscribe_capture.refuse_weakening(r.objid);
    END LOOP;
    FOR r IN SELECT objid, bool_or(command_tag = 'ALTER TABLE') AS altered FROM pg_event_trigger_ddl_commands()
              WHERE classid = 'pg_class'::regclass AND object_type IN ('table', 'table column') GROUP BY objid LOOP
        BEGIN
            PERFORM walscribe_capture.capture_table(r.objid);
            -- A partition attached to a table: capture the partitions too.
            PERFORM walscribe_capture.capture_table(p.relid) FROM pg_partition_tree(r.objid) p WHERE p.relid <> r.objid;
            -- A partition detached from a tracked table keeps the bridge's
            -- trigger but is published by nothing any more: captured on its
            -- own when the patterns match it, else said.
            IF r.altered AND (SELECT relkind FROM pg_class WHERE oid = r.objid) = 'p'
               AND EXISTS (SELECT 1 FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
                            WHERE p.pubname = {{publication}} AND pr.prrelid = r.objid) THEN
                FOR d IN SELECT c.oid FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
                          WHERE g.tgname = 'walscribe_context' AND NOT c.relispartition
                            AND NOT EXISTS (SELECT 1 FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
                                             WHERE p.pubname = {{publication}} AND pr.prrelid = c.oid) LOOP
                    PERFORM walscribe_capture.capture_table(d.oid);
                    IF NOT EXISTS (SELECT 1 FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
                                    WHERE p.pubname = {{publication}} AND pr.prrelid = d.oid) THEN
                        RAISE WARNING 'walscribe: % is no longer a partition of a tracked table, and no entry of tables names it: its changes are not audited from now on', d.oid::regclass;
                    END IF;
                END LOOP;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            -- The application's DDL goes on; the table is not audited.
            RAISE WARNING 'walscribe: % is not audited: %; run walscribe setup to add it', r.objid::regclass, SQLERRM;
        END;
    END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS walscribe_capture;
CREATE EVENT TRIGGER walscribe_capture ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE', 'CREATE SCHEMA')
    EXECUTE FUNCTION walscribe_capture.capture_new_tables();
-- ALWAYS: session_replication_role does not switch it off either.
ALTER EVENT TRIGGER walscribe_capture ENABLE ALWAYS;
REVOKE ALL ON FUNCTION walscribe_capture.capture_new_tables() FROM PUBLIC;

-- An event trigger of an earlier version, which read the statement's text.
DROP EVENT TRIGGER IF EXISTS walscribe_guard;
DROP FUNCTION IF EXISTS walscribe_capture.guard_ddl();
DROP FUNCTION IF EXISTS walscribe_capture.tracked(oid);
