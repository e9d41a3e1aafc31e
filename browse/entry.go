package browse

import (
	"bytes"
	"encoding/json"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Entry is a stored entry as readers see it. Every text in it is what the
// trail holds, written by whoever made the change or event: escape it
// wherever it is shown.
type Entry struct {
	ID              int64           `json:"id"`
	CommitLSN       string          `json:"commit_lsn"`
	Seq             int32           `json:"seq"`
	Xid             *int64          `json:"xid"`
	CommittedAt     time.Time       `json:"committed_at"`
	CapturedAt      time.Time       `json:"captured_at"`
	Schema          string          `json:"schema"`
	Table           string          `json:"table"`
	Action          string          `json:"action"`
	PK              json.RawMessage `json:"pk"`
	Old             json.RawMessage `json:"old"`
	New             json.RawMessage `json:"new"`
	Changed         []string        `json:"changed"`
	ActorID         *string         `json:"actor_id"`
	Actor           *string         `json:"actor"`
	IP              *string         `json:"ip"`
	UserAgent       *string         `json:"user_agent"`
	RequestID       *string         `json:"request_id"`
	DBUser          *string         `json:"db_user"`
	LoginUser       *string         `json:"login_user"`
	ClientAddr      *string         `json:"client_addr"`
	ApplicationName *string         `json:"application_name"`
	Context         json.RawMessage `json:"context"`
	RetentionClass  string          `json:"retention_class"`
	Flags           []string        `json:"flags"`
}

// entryColumns are the columns scanEntry reads, of entries aliased e.
const entryColumns = `e.id, e.commit_lsn::text, e.seq, e.xid, e.committed_at, e.captured_at, e.schema_name, e.table_name, e.action,
	e.pk::text, e.old::text, e.new::text, e.changed, e.actor_id, e.actor, host(e.ip), e.user_agent, e.request_id, e.db_user,
	e.login_user, host(e.client_addr), e.application_name, e.context::text, e.retention_class, e.flags`

func scanEntry(row pgx.CollectableRow) (Entry, error) {
	var e Entry
	var pk, old, nw, ctx *string
	err := row.Scan(&e.ID, &e.CommitLSN, &e.Seq, &e.Xid, &e.CommittedAt, &e.CapturedAt, &e.Schema, &e.Table, &e.Action,
		&pk, &old, &nw, &e.Changed, &e.ActorID, &e.Actor, &e.IP, &e.UserAgent, &e.RequestID, &e.DBUser,
		&e.LoginUser, &e.ClientAddr, &e.ApplicationName, &ctx, &e.RetentionClass, &e.Flags)
	e.PK, e.Old, e.New, e.Context = raw(pk), raw(old), raw(nw), raw(ctx)
	e.CommittedAt, e.CapturedAt = e.CommittedAt.UTC(), e.CapturedAt.UTC()
	return e, err
}

func raw(s *string) json.RawMessage {
	if s == nil {
		return nil
	}
	return json.RawMessage(*s)
}

// Columns is every column name that old or new hold, in the order the
// table gave them (new's first), for a side-by-side view.
func (e *Entry) Columns() []string {
	seen := map[string]bool{}
	var out []string
	for _, doc := range []json.RawMessage{e.New, e.Old} {
		for _, k := range objectKeys(doc) {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// objectKeys are the keys of a JSON object in document order (none for
// anything else).
func objectKeys(doc json.RawMessage) []string {
	if len(doc) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return keys
		}
		k, _ := t.(string)
		keys = append(keys, k)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return keys
		}
	}
	return keys
}

// Field is one column of an entry's images, side by side.
type Field struct {
	Name     string
	Old, New string // the value as JSON text ("" when the image lacks it)
	InOld    bool
	InNew    bool
	Changed  bool // among the entry's changed columns, or differing between the images
}

// Fields are the columns of an entry's images, side by side, in
// Columns' order.
func (e *Entry) Fields() []Field {
	old, nw := values(e.Old), values(e.New)
	var out []Field
	for _, name := range e.Columns() {
		f := Field{Name: name}
		var o, n json.RawMessage
		o, f.InOld = old[name]
		n, f.InNew = nw[name]
		f.Old, f.New = string(o), string(n)
		f.Changed = slices.Contains(e.Changed, name) || f.InOld && f.InNew && f.Old != f.New
		out = append(out, f)
	}
	return out
}

func values(doc json.RawMessage) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if len(doc) > 0 && json.Unmarshal(doc, &m) == nil {
		for k, v := range m {
			var c bytes.Buffer
			if json.Compact(&c, v) == nil {
				m[k] = c.Bytes()
			}
		}
	}
	return m
}
