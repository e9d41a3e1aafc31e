-- flags: what walscribe had to change to store an entry, or what it could
-- not vouch for (see audit.Flag*): json_reencoded, text_escaped,
-- text_clipped, pk_hashed, truncated, unstorable, reserved_action,
-- no_context. NULL: stored as decoded.
ALTER TABLE {{schema}}.entries ADD COLUMN flags text[];
