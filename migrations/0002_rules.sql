-- The per-table rules in force (which tables, columns left out or masked,
-- diff, actions), recorded whenever they change: at start when they differ
-- from the last record, and at each reload. A record applies to the source
-- transactions that end after from_lsn. Insert-only.
CREATE TABLE {{schema}}.rules (
    slot        text        NOT NULL,
    from_lsn    pg_lsn      NOT NULL, -- applies to transactions ending after this position
    rules       jsonb       NOT NULL, -- the rules; the masking secret only as a key id
    reason      text        NOT NULL, -- start or reload
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rules_slot_idx ON {{schema}}.rules (slot, from_lsn);

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {{schema}}.rules
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {{schema}}.rules
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.reject_change();
ALTER TABLE {{schema}}.rules ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE {{schema}}.rules ENABLE ALWAYS TRIGGER append_only_truncate;
