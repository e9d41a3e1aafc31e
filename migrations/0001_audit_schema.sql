-- The audit trail: one row per change or event, append-only.
-- {{schema}} is replaced by the configured schema (sink.schema, default audit).

CREATE TABLE {{schema}}.entries (
    id               bigint      NOT NULL, -- dense and gapless, assigned by the writer in (commit_lsn, seq) order
    commit_lsn       pg_lsn      NOT NULL, -- LSN of the source transaction's commit record
    seq              integer     NOT NULL, -- order within the transaction, from 1
    xid              bigint,               -- source transaction id
    committed_at     timestamptz NOT NULL, -- source commit time
    captured_at      timestamptz NOT NULL DEFAULT now(),
    schema_name      text        NOT NULL,
    table_name       text        NOT NULL,
    action           text        NOT NULL, -- insert, update, delete, truncate, or an application event word
    pk               jsonb,                -- primary-key column -> value (every column when there is no primary key)
    old              jsonb,                -- row before the change (update, delete)
    new              jsonb,                -- row after the change (insert, update); truncate options
    changed          text[],               -- columns whose value changed (update)
    actor_id         text,
    actor            text,
    ip               inet,
    user_agent       text,
    request_id       text,
    db_user          text,
    client_addr      inet,
    application_name text,
    context          jsonb,
    retention_class  text        NOT NULL DEFAULT 'default',
    PRIMARY KEY (id, committed_at, retention_class),
    -- backstop against a transaction written twice
    UNIQUE (commit_lsn, seq, committed_at, retention_class)
) PARTITION BY RANGE (committed_at);

COMMENT ON TABLE {{schema}}.entries IS 'walscribe audit trail: append-only, one row per change or event';

-- The history of one row.
CREATE INDEX entries_row_idx ON {{schema}}.entries (schema_name, table_name, pk, id);
-- The activity of one actor, and what one request changed.
CREATE INDEX entries_actor_idx ON {{schema}}.entries (actor_id, id) WHERE actor_id IS NOT NULL;
CREATE INDEX entries_request_idx ON {{schema}}.entries (request_id) WHERE request_id IS NOT NULL;

-- Progress: insert-only, written in the same transaction as the entries it
-- covers. The newest row of a slot is where streaming resumes.
CREATE TABLE {{schema}}.checkpoints (
    slot         text        NOT NULL,
    end_lsn      pg_lsn      NOT NULL, -- end of the last source transaction stored
    last_id      bigint      NOT NULL, -- id of the last entry stored (0: none yet)
    committed_at timestamptz,          -- commit time of that transaction
    entries      integer     NOT NULL, -- entries written with this checkpoint
    written_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (slot, end_lsn)
);

-- Append-only, enforced by the database.
CREATE FUNCTION {{schema}}.reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'walscribe: %.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {{schema}}.entries
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {{schema}}.entries
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {{schema}}.checkpoints
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {{schema}}.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.reject_change();
-- ALWAYS: session_replication_role = replica does not skip them.
ALTER TABLE {{schema}}.entries ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE {{schema}}.entries ENABLE ALWAYS TRIGGER append_only_truncate;
ALTER TABLE {{schema}}.checkpoints ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE {{schema}}.checkpoints ENABLE ALWAYS TRIGGER append_only_truncate;

-- ensure_partitions creates the month partitions covering [p_from, p_to] and,
-- in each, a leaf per retention class. Months are UTC months. Each leaf gets
-- its own TRUNCATE guard (statement triggers are not inherited).
CREATE FUNCTION {{schema}}.ensure_partitions(p_from timestamptz, p_to timestamptz, p_classes text[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m      timestamp := date_trunc('month', p_from AT TIME ZONE 'UTC');
    month  text;
    class  text;
    leaf   text;
BEGIN
    WHILE m <= p_to AT TIME ZONE 'UTC' LOOP
        month := 'entries_' || to_char(m, 'YYYY"m"MM');
        IF to_regclass(format('%I.%I', '{{schema_raw}}', month)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.entries FOR VALUES FROM (%L) TO (%L) PARTITION BY LIST (retention_class)',
                '{{schema_raw}}', month, '{{schema_raw}}', (m AT TIME ZONE 'UTC'), ((m + interval '1 month') AT TIME ZONE 'UTC'));
        END IF;
        FOREACH class IN ARRAY p_classes LOOP
            leaf := month || '_' || class;
            IF to_regclass(format('%I.%I', '{{schema_raw}}', leaf)) IS NULL THEN
                EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES IN (%L)',
                    '{{schema_raw}}', leaf, '{{schema_raw}}', month, class);
                EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %I.%I FOR EACH STATEMENT EXECUTE FUNCTION %I.reject_change()',
                    '{{schema_raw}}', leaf, '{{schema_raw}}');
                EXECUTE format('ALTER TABLE %I.%I ENABLE ALWAYS TRIGGER append_only_truncate', '{{schema_raw}}', leaf);
                EXECUTE format('ALTER TABLE %I.%I ENABLE ALWAYS TRIGGER append_only', '{{schema_raw}}', leaf);
            END IF;
        END LOOP;
        m := m + interval '1 month';
    END LOOP;
END
$$;
