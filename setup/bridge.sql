-- The context bridge, installed in the source database by walscribe setup.
-- {{schema}} is the audit schema (sink.schema), {{prefix}} the session
-- variable prefix (context.prefix). Re-running replaces the functions.

-- Everything here is owned by the owner role (roles.owner): setup runs this
-- file as that role. Nobody else may change these functions, and the
-- functions that run with the owner's rights (SECURITY DEFINER) look names
-- up only in pg_catalog.

-- bridge_key_a and bridge_key_b hold a random secret (about 116 bits) that
-- only the owner may read. It keys the mark emit_context leaves in the
-- transaction, so that no session can set the mark itself to keep the
-- context message back. Sequences rather than a table: emit_context reads
-- them for every statement, and pg_sequence_last_value reads one without
-- a query (a SELECT from a table costs the application's statements about
-- 20 µs more each). Made once: setup run again keeps the secret.
DO $$
BEGIN
    IF to_regclass('{{schema_raw}}.bridge_key_a') IS NULL THEN
        CREATE SEQUENCE {{schema}}.bridge_key_a;
        CREATE SEQUENCE {{schema}}.bridge_key_b;
        -- 58 random bits of a version-4 UUID each (gen_random_uuid is a
        -- cryptographic random source), as a positive bigint.
        PERFORM setval('{{schema_raw}}.bridge_key_a', (('x' || left(replace(gen_random_uuid()::text, '-', ''), 16))::bit(64)::bigint & 4611686018427387903) + 1, true),
                setval('{{schema_raw}}.bridge_key_b', (('x' || left(replace(gen_random_uuid()::text, '-', ''), 16))::bit(64)::bigint & 4611686018427387903) + 1, true);
    END IF;
END
$$;
REVOKE ALL ON {{schema}}.bridge_key_a, {{schema}}.bridge_key_b FROM PUBLIC;

-- current_context is what the application set, plus what the database saw.
-- The application's values are passed as text, unchecked: walscribe
-- validates them, so that a malformed value never makes a write fail. It
-- runs inside the SECURITY DEFINER functions below, where current_user is
-- the owner: the role that writes is the one SET ROLE chose (the setting
-- "role", which only SET ROLE changes and which the definer leaves alone),
-- else the role that logged in (session_user); login_user is the role that
-- logged in, when it differs. No SET clause of its own: only those
-- functions call it (with their search_path), and without one PostgreSQL
-- inlines it into their plans instead of planning it at every call.
CREATE OR REPLACE FUNCTION {{schema}}.current_context() RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'actor_id',         nullif(current_setting('{{prefix}}.actor_id', true), ''),
        'actor',            nullif(current_setting('{{prefix}}.actor', true), ''),
        'ip',               nullif(current_setting('{{prefix}}.ip', true), ''),
        'user_agent',       nullif(current_setting('{{prefix}}.user_agent', true), ''),
        'request_id',       nullif(current_setting('{{prefix}}.request_id', true), ''),
        'context',          nullif(current_setting('{{prefix}}.context', true), ''),
        'db_user',          {{db_user}},
        'login_user',       nullif(session_user::text, {{db_user}}),
        'client_addr',      host(inet_client_addr()),
        'application_name', nullif(current_setting('application_name', true), '')))
$$;

-- partition_truncates receives the bridge's reports of a partition's
-- TRUNCATE (emit_context); walscribe publishes it and reads them from the
-- stream. Only the owner writes it.
CREATE TABLE IF NOT EXISTS {{schema}}.partition_truncates (
    partition   text NOT NULL, -- schema.table, quoted as needed
    root_schema text NOT NULL,
    root        text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON {{schema}}.partition_truncates FROM PUBLIC;

-- bridge_emits numbers the context messages; currval is the number of the
-- last one this session wrote, which no session can set (only the owner
-- may call nextval) and which a rolled-back savepoint does not undo.
CREATE SEQUENCE IF NOT EXISTS {{schema}}.bridge_emits;
REVOKE ALL ON {{schema}}.bridge_emits FROM PUBLIC;

-- emit_context runs before each statement on a tracked table. It writes the
-- context into the transaction's WAL as a logical message only when it
-- differs from the one the session last wrote. The usual case, nothing
-- changed, builds no JSON and writes nothing: it compares a mark of the raw
-- settings with the mark of the last message, kept in a transaction-local
-- setting (which a rolled-back savepoint undoes together with the message
-- written inside it). The mark is a hash of the settings, the transaction
-- id, the number of the message (bridge_emits) and the secret: a session can
-- read it but not make one, and a mark of an earlier message no longer
-- matches, so setting it keeps no message back (an empty setting means no
-- message yet; a mark set before this session wrote any message makes
-- currval fail the statement). SECURITY DEFINER: only the owner may call
-- pg_logical_emit_message; a trigger function cannot be called with
-- arguments of the caller's choosing. (A WHEN condition on the trigger
-- would be re-read for every statement and costs more than this function.)
CREATE OR REPLACE FUNCTION {{schema}}.emit_context() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stored text := coalesce(current_setting('walscribe.emitted_context', true), '');
    mark   text;
BEGIN
    IF stored <> '' THEN
        mark := encode(sha256(convert_to({{key}} || ',' || pg_current_xact_id()::text
            || ',' || currval('{{schema}}.bridge_emits'::regclass)
            || ',' || pg_sequence_last_value('{{schema}}.bridge_key_a'::regclass)
            || ',' || pg_sequence_last_value('{{schema}}.bridge_key_b'::regclass), 'UTF8')), 'hex');
    END IF;
    IF mark IS DISTINCT FROM stored THEN
        PERFORM pg_logical_emit_message(true, 'walscribe.context', {{schema}}.current_context()::text);
        mark := encode(sha256(convert_to({{key}} || ',' || pg_current_xact_id()::text
            || ',' || nextval('{{schema}}.bridge_emits'::regclass)
            || ',' || pg_sequence_last_value('{{schema}}.bridge_key_a'::regclass)
            || ',' || pg_sequence_last_value('{{schema}}.bridge_key_b'::regclass), 'UTF8')), 'hex');
        PERFORM set_config('walscribe.emitted_context', mark, true);
    END IF;
    -- PostgreSQL does not stream the TRUNCATE of a partition when the
    -- publication publishes through the root: say it, so that the trail
    -- does not keep rows that are gone. A row of partition_truncates (in the
    -- publication) rather than a logical message: the stream tags a row
    -- with its subtransaction, so a savepoint rolled back takes the report
    -- with it. (A TRUNCATE of the root, which it streams, fires this for
    -- each partition too; walscribe drops those.)
    IF TG_OP = 'TRUNCATE' AND (SELECT relispartition FROM pg_class WHERE oid = TG_RELID) THEN
        INSERT INTO {{schema}}.partition_truncates (partition, root_schema, root)
        SELECT format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), n.nspname, c.relname
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = pg_partition_root(TG_RELID);
    END IF;
    RETURN NULL;
END
$$;

-- set_context sets every context variable at once; a NULL argument clears
-- that variable. Transaction-local by default, which is what connection
-- pools (PgBouncer in transaction mode included) need. plpgsql rather than
-- sql: plpgsql keeps its statement's plan for the session, where a sql
-- function is planned again at every call, which costs the application a
-- third of this call.
CREATE OR REPLACE FUNCTION {{schema}}.set_context(
    actor_id   text    DEFAULT NULL,
    actor      text    DEFAULT NULL,
    ip         text    DEFAULT NULL,
    user_agent text    DEFAULT NULL,
    request_id text    DEFAULT NULL,
    context    jsonb   DEFAULT NULL,
    is_local   boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('{{prefix}}.actor_id',   coalesce(set_context.actor_id, ''),      set_context.is_local),
            set_config('{{prefix}}.actor',      coalesce(set_context.actor, ''),         set_context.is_local),
            set_config('{{prefix}}.ip',         coalesce(set_context.ip, ''),            set_context.is_local),
            set_config('{{prefix}}.user_agent', coalesce(set_context.user_agent, ''),    set_context.is_local),
            set_config('{{prefix}}.request_id', coalesce(set_context.request_id, ''),    set_context.is_local),
            set_config('{{prefix}}.context',    coalesce(set_context.context::text, ''), set_context.is_local);
END
$$;

-- log_event records an application event (exported, login_failed, viewed,
-- ...) with the current context. transactional => false keeps it even when
-- the transaction rolls back: the way to record failed and denied
-- operations. SECURITY DEFINER, executable by the application group only:
-- who called it (db_user, login_user) is taken here, not from arguments.
CREATE OR REPLACE FUNCTION {{schema}}.log_event(
    action        text,
    target        text,
    object_id     text    DEFAULT NULL,
    data          jsonb   DEFAULT NULL,
    transactional boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- Trimmed of white space and control characters at both ends, as the
    -- decoder trims it (audit.NormalizeAction), which has the last word.
    word text := regexp_replace(action, '^[[:space:][:cntrl:]]+|[[:space:][:cntrl:]]+$', '', 'g');
BEGIN
    IF coalesce(word, '') = '' THEN
        RAISE EXCEPTION 'walscribe: log_event needs an action, a word such as ''exported'' or ''login_failed'''
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lower(word COLLATE "C") IN ('insert', 'update', 'delete', 'truncate', 'gap', 'pruned', 'rules') THEN
        RAISE EXCEPTION 'walscribe: % is a word walscribe records itself; give an event its own word, such as ''exported''', word
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_logical_emit_message(transactional, 'walscribe.event', jsonb_build_object(
        'action', word, 'target', target, 'object_id', object_id, 'data', data,
        'context', {{schema}}.current_context())::text);
END
$$;

-- Only the application group may call set_context and log_event; the other
-- functions run as triggers or inside them.
REVOKE ALL ON FUNCTION {{schema}}.current_context(), {{schema}}.emit_context(),
    {{schema}}.set_context(text, text, text, text, text, jsonb, boolean),
    {{schema}}.log_event(text, text, text, jsonb, boolean) FROM PUBLIC;
GRANT USAGE ON SCHEMA {{schema}} TO {{app}};
GRANT EXECUTE ON FUNCTION {{schema}}.set_context(text, text, text, text, text, jsonb, boolean),
    {{schema}}.log_event(text, text, text, jsonb, boolean) TO {{app}};
