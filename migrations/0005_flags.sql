-- flags: what walscribe had to change to store an entry, or why it could not
-- store it as decoded (see jsonb.Flag* and sink.Flag*): json_reencoded,
-- text_escaped, pk_hashed, unstorable. NULL: stored as decoded.
ALTER TABLE {{schema}}.entries ADD COLUMN flags text[];
