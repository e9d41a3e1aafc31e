-- Daily counts of the trail, for summaries over many days: per UTC day,
-- the entries by action, by table and action, and by actor and action.
-- They are derived from entries, not evidence: walscribe run writes a day
-- once everything committed in it is stored (daily_days marks it done),
-- and a purge deletes the days it touched, which are then counted again.
CREATE TABLE {{schema}}.daily_days (
    day         date        NOT NULL PRIMARY KEY,
    entries     bigint      NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE {{schema}}.daily_counts (
    day         date   NOT NULL,
    kind        "char" NOT NULL CHECK (kind IN ('d', 't', 'a')), -- d: by action; t: by table and action; a: by actor and action
    schema_name text,
    table_name  text,
    actor_id    text,
    action      text   NOT NULL,
    entries     bigint NOT NULL
);
CREATE INDEX daily_counts_day_idx ON {{schema}}.daily_counts (day, kind);

-- A time window's entries, found without reading whole months: entries
-- are written in about the order of their commit time, which is what a
-- block range index needs (tens of kilobytes a month).
-- autosummarize: the ranges of new pages are summarized as they fill, not
-- only when autovacuum gets to the partition.
CREATE INDEX entries_committed_brin ON {{schema}}.entries USING brin (committed_at) WITH (autosummarize = on);
