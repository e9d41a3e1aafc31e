-- Retention and exports.
--
-- Retention: entries expire by retention class (the period stamped on them
-- when written, such as 90d or 7y; 'default' never expires by itself). A
-- month of one class is a leaf partition, dropped whole once expired; rows
-- are deleted only where a leaf cannot go whole. Both go through the two
-- functions below, which run as the owner: nothing else may remove entries.
-- Every purge is recorded in prunes, in the same transaction, with the ids
-- it removed; walscribe verify accepts exactly those holes.

CREATE TABLE {{schema}}.prunes (
    entry_id      bigint         NOT NULL PRIMARY KEY, -- the entry (action pruned) that records it
    pruned_at     timestamptz    NOT NULL DEFAULT now(),
    scope         jsonb          NOT NULL,             -- what was removed: a leaf, or a table's rows before a time
    ids           int8multirange NOT NULL,             -- the ids removed
    entries       bigint         NOT NULL,             -- how many
    ids_sha256    bytea          NOT NULL,             -- SHA-256 of the ids, 8 bytes each big-endian, ascending
    leaves_sha256 bytea,                               -- SHA-256 of their leaf hashes, by id (integrity log)
    note          text                                 -- the prune record signed with the log's key (integrity log)
);

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {{schema}}.prunes
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {{schema}}.prunes
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.reject_change();
ALTER TABLE {{schema}}.prunes ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE {{schema}}.prunes ENABLE ALWAYS TRIGGER append_only_truncate;

-- own_entries lists the ids of the entries walscribe writes of its own
-- accord (an export, say) outside any source transaction: the stored
-- progress counts them.
CREATE TABLE {{schema}}.own_entries (
    entry_id bigint NOT NULL PRIMARY KEY
);
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {{schema}}.own_entries
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {{schema}}.own_entries
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.reject_change();
ALTER TABLE {{schema}}.own_entries ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE {{schema}}.own_entries ENABLE ALWAYS TRIGGER append_only_truncate;

-- exports is the history of exports: one row per change of state (queued,
-- running, succeeded, failed), insert-only.
CREATE TABLE {{schema}}.exports (
    export_id   text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    requester   text        NOT NULL,
    filter      jsonb       NOT NULL,
    destination text        NOT NULL,
    format      text        NOT NULL,
    entries     bigint,
    bytes       bigint,
    shards      jsonb,      -- name, entries, bytes, sha256 of each archive
    error       text,
    PRIMARY KEY (export_id, at)
);
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {{schema}}.exports
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {{schema}}.exports
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.reject_change();
ALTER TABLE {{schema}}.exports ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE {{schema}}.exports ENABLE ALWAYS TRIGGER append_only_truncate;

-- reject_change lets one thing through: a DELETE of entries by the owner
-- inside expire_rows, which says so for its transaction.
CREATE OR REPLACE FUNCTION {{schema}}.reject_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME LIKE 'entries%'
       AND current_setting('walscribe.expiring', true) = 'on'
       AND current_user = (SELECT r.rolname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = TG_RELID) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'walscribe: %.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
REVOKE ALL ON FUNCTION {{schema}}.reject_change() FROM PUBLIC;

-- retention_period is the period a class stands for: 1 to 36500 days, 5215
-- weeks, 1200 months or 100 years (NULL: never expires).
CREATE FUNCTION {{schema}}.retention_period(p_class text) RETURNS interval
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN p_class ~ '^[1-9][0-9]{0,4}[dwmy]$'
                 AND left(p_class, -1)::integer <= CASE right(p_class, 1) WHEN 'd' THEN 36500 WHEN 'w' THEN 5215
                                                                         WHEN 'm' THEN 1200 ELSE 100 END THEN
        (left(p_class, -1) || ' ' || CASE right(p_class, 1) WHEN 'd' THEN 'days' WHEN 'w' THEN 'weeks'
                                                           WHEN 'm' THEN 'months' ELSE 'years' END)::interval
    END
$$;

-- retention_leaves lists the leaf partitions of entries: each month of each
-- class, with the month's bounds and when the leaf expires (NULL: never),
-- all reckoned in UTC whatever the session's settings.
CREATE FUNCTION {{schema}}.retention_leaves()
RETURNS TABLE (leaf text, class text, month_start timestamptz, month_end timestamptz, expires_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' AS $$
    SELECT l.relname::text, b.class, b.lo, b.hi, b.hi + {{schema}}.retention_period(b.class)
      FROM pg_class e
      JOIN pg_namespace n ON n.oid = e.relnamespace
      JOIN pg_inherits im ON im.inhparent = e.oid
      JOIN pg_class m ON m.oid = im.inhrelid
      JOIN pg_inherits il ON il.inhparent = m.oid
      JOIN pg_class l ON l.oid = il.inhrelid
      CROSS JOIN LATERAL (SELECT
            (regexp_match(pg_get_expr(l.relpartbound, l.oid), '^FOR VALUES IN \(''([^'']*)''\)'))[1] AS class,
            (regexp_match(pg_get_expr(m.relpartbound, m.oid), 'FROM \(''([^'']*)''\)'))[1]::timestamptz AS lo,
            (regexp_match(pg_get_expr(m.relpartbound, m.oid), 'TO \(''([^'']*)''\)'))[1]::timestamptz AS hi) b
     WHERE n.nspname = '{{schema_raw}}' AND e.relname = 'entries' AND l.relkind = 'r'
$$;

-- expire_leaf drops one leaf partition, once expired (its month's end plus
-- its class's period is past), and records it in prunes in the same
-- transaction: p_entry (the id of the entry of action pruned the caller
-- writes), what it removed, and the caller's digests and signed note. The
-- ids it holds must be those the caller hashed (p_ids_sha256: SHA-256 of
-- the ids, ascending, 8 bytes each big-endian). It returns how many went.
CREATE FUNCTION {{schema}}.expire_leaf(p_leaf text, p_entry bigint, p_scope jsonb, p_ids_sha256 bytea, p_leaves_sha256 bytea, p_note text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' AS $$
DECLARE
    v_expires timestamptz;
    v_ids     int8multirange;
    v_n       bigint;
    v_sha     bytea;
BEGIN
    SELECT l.expires_at INTO v_expires FROM {{schema}}.retention_leaves() l WHERE l.leaf = p_leaf;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'walscribe: % is not a partition of %.entries', p_leaf, '{{schema_raw}}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_expires IS NULL OR v_expires > now() THEN
        RAISE EXCEPTION 'walscribe: %.% has not expired (it expires %)', '{{schema_raw}}', p_leaf, coalesce(v_expires::text, 'never')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('LOCK TABLE %I.%I IN ACCESS EXCLUSIVE MODE', '{{schema_raw}}', p_leaf);
    EXECUTE format('SELECT range_agg(int8range(id, id, %L)), count(*), sha256(coalesce(string_agg(int8send(id), %L ORDER BY id), %L)) FROM %I.%I',
        '[]', '', '', '{{schema_raw}}', p_leaf) INTO v_ids, v_n, v_sha;
    IF v_n > 0 AND v_sha IS DISTINCT FROM p_ids_sha256 THEN
        RAISE EXCEPTION 'walscribe: %.% holds other entries than the caller read (some came in): try again', '{{schema_raw}}', p_leaf
            USING ERRCODE = 'serialization_failure';
    END IF;
    EXECUTE format('DROP TABLE %I.%I', '{{schema_raw}}', p_leaf);
    IF v_n > 0 THEN
        INSERT INTO {{schema}}.prunes (entry_id, scope, ids, entries, ids_sha256, leaves_sha256, note)
        VALUES (p_entry, p_scope, v_ids, v_n, v_sha, p_leaves_sha256, p_note);
    END IF;
    RETURN v_n;
END
$$;
REVOKE ALL ON FUNCTION {{schema}}.expire_leaf(text, bigint, jsonb, bytea, bytea, text) FROM PUBLIC;

-- expire_rows deletes the entries p_ids of one table committed before
-- p_before, at least a day ago (only from classes p_classes, when given;
-- never walscribe's own), at most 1000000 at a time, and records it in
-- prunes as expire_leaf does. Every id must be such an entry, or nothing
-- is deleted. It returns how many went.
CREATE FUNCTION {{schema}}.expire_rows(p_schema text, p_table text, p_before timestamptz, p_classes text[], p_ids bigint[],
    p_entry bigint, p_scope jsonb, p_leaves_sha256 bytea, p_note text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' AS $$
DECLARE
    v_ids int8multirange;
    v_n   bigint;
    v_sha bytea;
BEGIN
    IF p_before > now() - interval '1 day' THEN
        RAISE EXCEPTION 'walscribe: expire_rows removes entries committed more than a day ago, not before %', p_before
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_schema = 'walscribe' THEN
        RAISE EXCEPTION 'walscribe: walscribe''s own entries do not expire'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_ids) IS NULL OR cardinality(p_ids) > 1000000 THEN
        RAISE EXCEPTION 'walscribe: expire_rows removes from 1 to 1000000 entries at a time'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('walscribe.expiring', 'on', true);
    WITH gone AS (
        DELETE FROM {{schema}}.entries e
         WHERE e.id = ANY (p_ids) AND e.schema_name = p_schema AND e.table_name = p_table AND e.committed_at < p_before
           AND (p_classes IS NULL OR e.retention_class = ANY (p_classes))
        RETURNING e.id
    )
    SELECT range_agg(int8range(id, id, '[]')), count(*), sha256(coalesce(string_agg(int8send(id), '' ORDER BY id), ''))
      INTO v_ids, v_n, v_sha FROM gone;
    PERFORM set_config('walscribe.expiring', 'off', true);
    IF v_n <> (SELECT count(DISTINCT i) FROM unnest(p_ids) i) THEN
        RAISE EXCEPTION 'walscribe: % of the % entries to remove are not entries of %.% committed before %', cardinality(p_ids) - v_n, cardinality(p_ids), p_schema, p_table, p_before
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO {{schema}}.prunes (entry_id, scope, ids, entries, ids_sha256, leaves_sha256, note)
    VALUES (p_entry, p_scope, v_ids, v_n, v_sha, p_leaves_sha256, p_note);
    RETURN v_n;
END
$$;
REVOKE ALL ON FUNCTION {{schema}}.expire_rows(text, text, timestamptz, text[], bigint[], bigint, jsonb, bytea, text) FROM PUBLIC;
