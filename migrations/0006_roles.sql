-- The trail belongs to a NOLOGIN owner role; the daemon's role may only
-- append to it (setup grants what it needs). The daemon creates the month
-- partitions through ensure_partitions, which runs as the owner and looks
-- names up only in pg_catalog. It creates at most 36 months and 64 classes
-- at a time: an entry cannot make the trail create partitions far outside
-- its month.

-- login_user: the role that logged in, when the role that wrote (db_user,
-- chosen with SET ROLE) is another.
ALTER TABLE {{schema}}.entries ADD COLUMN login_user text;

CREATE OR REPLACE FUNCTION {{schema}}.ensure_partitions(p_from timestamptz, p_to timestamptz, p_classes text[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m      timestamp := date_trunc('month', p_from AT TIME ZONE 'UTC');
    month  text;
    class  text;
    leaf   text;
BEGIN
    IF cardinality(p_classes) > 64 THEN
        RAISE EXCEPTION 'walscribe: ensure_partitions creates at most 64 retention classes at a time, not %', cardinality(p_classes)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_to - p_from > interval '1100 days' THEN
        RAISE EXCEPTION 'walscribe: ensure_partitions creates at most 36 months at a time, not % to %', p_from, p_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
REVOKE ALL ON FUNCTION {{schema}}.ensure_partitions(timestamptz, timestamptz, text[]) FROM PUBLIC;

ALTER FUNCTION {{schema}}.reject_change() SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION {{schema}}.reject_change() FROM PUBLIC;
