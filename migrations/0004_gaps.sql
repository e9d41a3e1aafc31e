-- Gaps: stretches of the source's history the trail cannot hold, because
-- the replication slot was lost, dropped and recreated, or moved past what
-- was stored. Each is also an entry (action 'gap') in the trail itself.
-- Insert-only.
CREATE TABLE {{schema}}.gaps (
    slot        text        NOT NULL,
    reason      text        NOT NULL, -- slot_missing, slot_lost, slot_ahead
    from_lsn    pg_lsn      NOT NULL, -- the last position stored before the gap
    to_lsn      pg_lsn,               -- where the trail resumes (NULL: it did not resume)
    last_commit timestamptz,          -- commit time of the last transaction stored before it
    entry_id    bigint      NOT NULL, -- its entry in the trail
    detected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (slot, reason, from_lsn)
);

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {{schema}}.gaps
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {{schema}}.gaps
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.reject_change();
ALTER TABLE {{schema}}.gaps ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE {{schema}}.gaps ENABLE ALWAYS TRIGGER append_only_truncate;
