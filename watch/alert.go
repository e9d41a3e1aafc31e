package watch

import (
	"encoding/json"
	"strconv"
	"time"
)

// Alert is one breach of a watch. It is what the trail records (as the
// new image of an entry walscribe.watch, action alert), what a webhook
// receives as JSON, and what the UI shows.
type Alert struct {
	// ID is "<watch>:<entry id>": unique per breach, and the same in the
	// trail and in each delivery attempt of a webhook (its
	// X-Walscribe-Alert header), so that receivers can drop repeats.
	ID          string
	Watch       string
	Kind        Kind
	Description string
	// By is what the watch groups by, and Group the group's value: "" for
	// by all, or an entry without it (no actor); a value longer than 256
	// bytes is shown by its beginning and SHA-256.
	By    GroupBy
	Group string
	// Count is the matching entries of the group: in the window when the
	// batch that fired the watch was stored (threshold; at least Limit+1),
	// in the cooldown (with a cooldown), or in the transaction (without).
	Count int64
	// Limit is the watch's count (threshold; 0 for the other kinds).
	Limit int64
	// Window is the threshold's window, or the cooldown; 0 when the watch
	// fires per transaction.
	Window time.Duration
	// EntryID is the entry that fired the watch; FirstID the oldest entry
	// of the group in the window (EntryID without a window), LastID the
	// newest of the batch that fired it.
	EntryID, FirstID, LastID int64
	// Sample lists up to 20 ids of the group's entries, oldest first.
	Sample []int64
	// Table (schema.table) and Action are those of the entry that fired
	// the watch, Xid its source transaction's.
	Table  string
	Action string
	Xid    uint32
	// At is when the firing entry was committed in the source; FiredAt
	// when walscribe evaluated it (after it was stored).
	At      time.Time
	FiredAt time.Time

	g *group // the group whose alert this is, while its batch is observed
}

// alertJSON is Alert's JSON form: snake_case keys, durations as text and
// seconds, times in UTC.
type alertJSON struct {
	ID            string  `json:"id"`
	Watch         string  `json:"watch"`
	Kind          Kind    `json:"kind"`
	Description   string  `json:"description,omitempty"`
	By            GroupBy `json:"by"`
	Group         string  `json:"group"`
	Count         int64   `json:"count"`
	Limit         int64   `json:"limit,omitempty"`
	Window        string  `json:"window,omitempty"`
	WindowSeconds float64 `json:"window_seconds,omitempty"`
	EntryID       int64   `json:"entry_id"`
	FirstID       int64   `json:"first_id"`
	LastID        int64   `json:"last_id"`
	Sample        []int64 `json:"sample_ids"`
	Table         string  `json:"table"`
	Action        string  `json:"action"`
	Xid           uint32  `json:"xid,omitempty"`
	At            string  `json:"at"`
	FiredAt       string  `json:"fired_at"`
}

// MarshalJSON writes the alert with snake_case keys.
func (a *Alert) MarshalJSON() ([]byte, error) {
	j := alertJSON{ID: a.ID, Watch: a.Watch, Kind: a.Kind, Description: a.Description, By: a.By, Group: a.Group,
		Count: a.Count, Limit: a.Limit, EntryID: a.EntryID, FirstID: a.FirstID, LastID: a.LastID, Sample: a.Sample,
		Table: a.Table, Action: a.Action, Xid: a.Xid,
		At: a.At.UTC().Format(time.RFC3339Nano), FiredAt: a.FiredAt.UTC().Format(time.RFC3339Nano)}
	if a.Window > 0 {
		j.Window, j.WindowSeconds = a.Window.String(), a.Window.Seconds()
	}
	if j.Sample == nil {
		j.Sample = []int64{}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (a *Alert) UnmarshalJSON(b []byte) error {
	var j alertJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*a = Alert{ID: j.ID, Watch: j.Watch, Kind: j.Kind, Description: j.Description, By: j.By, Group: j.Group,
		Count: j.Count, Limit: j.Limit, EntryID: j.EntryID, FirstID: j.FirstID, LastID: j.LastID, Sample: j.Sample,
		Table: j.Table, Action: j.Action, Xid: j.Xid}
	if j.Window != "" {
		d, err := time.ParseDuration(j.Window)
		if err != nil {
			return err
		}
		a.Window = d
	}
	for _, t := range []struct {
		s   string
		dst *time.Time
	}{{j.At, &a.At}, {j.FiredAt, &a.FiredAt}} {
		if t.s == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.s)
		if err != nil {
			return err
		}
		*t.dst = v
	}
	return nil
}

func alertID(watch string, entry int64) string { return watch + ":" + strconv.FormatInt(entry, 10) }
