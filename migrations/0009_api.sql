-- The API's bearer tokens. A token is "wst_<id>_<secret>": only the
-- SHA-256 of its secret is stored, so whoever reads this table (the reader
-- role, which the API logs in as) learns nothing that lets them use one.
-- Insert-only: a token is revoked by a row in api_token_revocations.
CREATE TABLE {{schema}}.api_tokens (
    token_id      text        NOT NULL PRIMARY KEY CHECK (token_id ~ '^[a-z0-9]{12}$'),
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role          text        NOT NULL CHECK (role IN ('viewer', 'auditor', 'admin')),
    actor_id      text,                 -- the caller's own actor id (me/activity); NULL: none
    secret_sha256 bytea       NOT NULL CHECK (length(secret_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by    text        NOT NULL, -- the database role and OS user that created it
    expires_at    timestamptz            -- NULL: until revoked
);
CREATE TABLE {{schema}}.api_token_revocations (
    token_id   text        NOT NULL PRIMARY KEY REFERENCES {{schema}}.api_tokens,
    revoked_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_by text        NOT NULL
);
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {{schema}}.api_tokens
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {{schema}}.api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.reject_change();
ALTER TABLE {{schema}}.api_tokens ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE {{schema}}.api_tokens ENABLE ALWAYS TRIGGER append_only_truncate;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {{schema}}.api_token_revocations
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.reject_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {{schema}}.api_token_revocations
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.reject_change();
ALTER TABLE {{schema}}.api_token_revocations ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE {{schema}}.api_token_revocations ENABLE ALWAYS TRIGGER append_only_truncate;
