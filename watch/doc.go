// Package watch raises alerts on suspicious activity in the trail as it is
// stored: more than N deletes by one actor within a minute, any change to
// payroll outside working hours, a read of a table with masked columns.
//
// Each watch (a Rule, one entry of the configuration's watches list) looks
// at the entries of some tables and actions (and, optionally, columns) and
// counts them per group (actor_id, actor, db_user, ip, client_addr,
// request_id, table, or all). The kinds:
//
//   - threshold: more than count entries of one group within window. The
//     window slides in steps of a thirtieth of it (buckets): an entry
//     counts for at least 29/30 of window and never longer than window.
//   - outside_hours: an entry committed outside hours on days, by the wall
//     clock of time_zone (daylight saving time included).
//   - match: any entry.
//
// Once per breach. A threshold group fires on the entry that takes its count
// in the window past count, and then stays quiet while it is in breach; it
// re-arms when an entry of the group finds its count in the window back at
// count or below (or the group's window has passed without entries), so the
// next crossing is a new breach and fires again. match and outside_hours
// fire once per source transaction holding matching entries (per group);
// with a cooldown, once per run of matching entries of a group no two of
// which are further apart than the cooldown (a threshold of 0 over the
// cooldown). Time is the entries' commit time, never the clock walscribe
// reads them by: a backlog replayed after an outage counts as it happened.
// Commit times out of order by a little (concurrent commits) count as of the
// group's newest.
//
// Bounds: entries are anyone's words. A windowed watch tracks at most
// max_groups groups (about 1 KiB each), forgetting the least recently
// used (walscribe_watch_groups_evicted_total counts those still counting);
// a group's value is kept to 256 bytes and a hash; an alert lists at most 20
// entry ids; a transaction fires a watch without a window for at most
// max_groups groups (the rest count as one more). The cache of which
// watches look at which table holds 10000 tables.
//
// Delivery never blocks the caller. Observe, which the sink calls after each
// commit, only counts; an alert is queued (at most Config.QueueSize per
// target, more are dropped and counted) for a goroutine that records it in
// the trail through a Recorder (an entry walscribe.watch, action alert,
// with the alert as its new image; three attempts) and another that POSTs it
// to the watch's webhook (three attempts, each bounded by webhook_timeout;
// signed with HMAC-SHA256 when a secret is set, see Sign). The metric
// walscribe_watch_alerts_total{watch} counts every alert as it fires.
//
// Restart: state is in memory only. Entries the sink stored before a
// restart are not evaluated again (the sink skips what it holds), so
// nothing fires twice for them; a breach still going on at a restart starts
// counting from zero, and fires again once the entries stored after the
// restart breach the watch by themselves. Alerts queued and not delivered
// when the process dies are lost (walscribe_watch_alerts_total against
// walscribe_watch_deliveries_total shows it); Close delivers them on a
// clean stop, within its context's deadline.
package watch
