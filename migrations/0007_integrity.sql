-- Tamper evidence (integrity.enabled): the entries are the leaves of a
-- Merkle log (RFC 6962); leaf i is the hash of entry id i + 1's columns in
-- the canonical encoding of package integrity. Both tables are insert-only.

-- The leaf hashes, as the writer computed them, one row per sink
-- transaction that wrote entries: they name the entry a change was made to
-- (the tree of signed checkpoints vouches for them), and they keep the tree
-- whole when entries expire.
CREATE TABLE {{schema}}.integrity_leaves (
    first_id   bigint      NOT NULL PRIMARY KEY, -- id of the entry of the first leaf
    leaves     bytea       NOT NULL,             -- 32 bytes per entry, first_id, first_id + 1, ...
    tree       bytea       NOT NULL,             -- the tree's compact range after the last of them
    written_at timestamptz NOT NULL DEFAULT now(),
    CHECK (octet_length(leaves) > 0 AND octet_length(leaves) % 32 = 0)
);

-- Signed checkpoints: the tree's size and root, signed with a key kept
-- outside the database, as a note in the C2SP tlog-checkpoint form. Copies
-- are also written outside the database (integrity.checkpoint_dir).
CREATE TABLE {{schema}}.integrity_checkpoints (
    tree_size bigint      NOT NULL PRIMARY KEY, -- entries 1 .. tree_size
    root      bytea       NOT NULL,
    note      text        NOT NULL,             -- the signed checkpoint
    signed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {{schema}}.integrity_leaves
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {{schema}}.integrity_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.reject_change();
ALTER TABLE {{schema}}.integrity_leaves ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE {{schema}}.integrity_leaves ENABLE ALWAYS TRIGGER append_only_truncate;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {{schema}}.integrity_checkpoints
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {{schema}}.integrity_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.reject_change();
ALTER TABLE {{schema}}.integrity_checkpoints ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE {{schema}}.integrity_checkpoints ENABLE ALWAYS TRIGGER append_only_truncate;
