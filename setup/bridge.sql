-- The context bridge, installed in the source database by walscribe setup.
-- {{schema}} is the audit schema (sink.schema), {{prefix}} the session
-- variable prefix (context.prefix). Re-running replaces the functions.

CREATE SCHEMA IF NOT EXISTS {{schema}};
-- Every role that writes to a tracked table runs the bridge's trigger, and
-- applications call set_context and log_event: they need to find the
-- functions. USAGE lets them look names up; it grants no access to the
-- audit tables themselves.
GRANT USAGE ON SCHEMA {{schema}} TO PUBLIC;

-- current_context is what the application set, plus what the database saw.
-- The application's values are passed as text, unchecked: walscribe
-- validates them, so that a malformed value never makes a write fail.
CREATE OR REPLACE FUNCTION {{schema}}.current_context() RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'actor_id',         nullif(current_setting('{{prefix}}.actor_id', true), ''),
        'actor',            nullif(current_setting('{{prefix}}.actor', true), ''),
        'ip',               nullif(current_setting('{{prefix}}.ip', true), ''),
        'user_agent',       nullif(current_setting('{{prefix}}.user_agent', true), ''),
        'request_id',       nullif(current_setting('{{prefix}}.request_id', true), ''),
        'context',          nullif(current_setting('{{prefix}}.context', true), ''),
        'db_user',          current_user::text,
        'client_addr',      host(inet_client_addr()),
        'application_name', nullif(current_setting('application_name', true), '')))
$$;

-- emit_context runs before each statement on a tracked table. It writes the
-- context into the transaction's WAL as a logical message only when it
-- differs from the one the transaction last wrote. It compares a key of the
-- raw settings with the key of the last message, kept in a
-- transaction-local setting (which a rolled-back savepoint undoes together
-- with the message written inside it): the usual case, nothing changed,
-- builds no JSON and writes nothing. (A WHEN condition on the trigger would
-- be re-read for every statement and costs more than this function.)
CREATE OR REPLACE FUNCTION {{schema}}.emit_context() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    k text := {{key}};
BEGIN
    IF k IS DISTINCT FROM current_setting('walscribe.emitted_context', true) THEN
        PERFORM pg_logical_emit_message(true, 'walscribe.context', {{schema}}.current_context()::text);
        PERFORM set_config('walscribe.emitted_context', k, true);
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
-- operations.
CREATE OR REPLACE FUNCTION {{schema}}.log_event(
    action        text,
    target        text,
    object_id     text    DEFAULT NULL,
    data          jsonb   DEFAULT NULL,
    transactional boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
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
