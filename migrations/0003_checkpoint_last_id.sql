-- The sink reads the last entry id of the schema at every batch (every
-- writer, every slot, continues the same numbering): an index keeps that
-- read constant-time as checkpoints accumulate.
CREATE INDEX checkpoints_last_id_idx ON {{schema}}.checkpoints (last_id);
