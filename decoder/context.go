package decoder

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pglogrepl"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/jsonb"
	"github.com/walscribe/walscribe/spool"
)

// The prefixes of the logical messages walscribe reads. Every other message
// in the database (they ignore the publication) is left alone.
const (
	// ContextPrefix marks the context bridge's transactional message: the
	// context in force for the changes that follow in the transaction.
	ContextPrefix = "walscribe.context"
	// EventPrefix marks an application event (audit.log_event).
	EventPrefix = "walscribe.event"
	// truncatesTable is the bridge's table of partition TRUNCATE reports
	// (setup.BridgeTruncates), in BridgeSchema.
	truncatesTable = "partition_truncates"
)

// wireContext is the bridge's JSON. Context is the text the application set
// in <prefix>.context, not yet known to be JSON.
type wireContext struct {
	ActorID         string `json:"actor_id"`
	Actor           string `json:"actor"`
	IP              string `json:"ip"`
	UserAgent       string `json:"user_agent"`
	RequestID       string `json:"request_id"`
	Context         string `json:"context"`
	DBUser          string `json:"db_user"`
	LoginUser       string `json:"login_user"`
	ClientAddr      string `json:"client_addr"`
	ApplicationName string `json:"application_name"`
}

// parseContext reads the bridge's JSON into w. The bridge writes a flat
// object of strings (jsonb's text, `{"ip": "…", "actor_id": "…"}`): when it
// holds no escape it is read here, without reflection, which makes it a
// fraction of the cost; anything else goes through encoding/json, whose
// result the quick reading always equals.
func parseContext(b []byte, w *wireContext) error {
	if readPlainContext(b, w) {
		return nil
	}
	*w = wireContext{}
	return json.Unmarshal(b, w)
}

// readPlainContext reads b into w if b is an object of the bridge's keys
// with string values free of escapes and control characters, in valid
// UTF-8; otherwise it reports false, leaving w partly set.
func readPlainContext(b []byte, w *wireContext) bool {
	i := skipJSONSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipJSONSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipJSONSpace(b, i+1) == len(b)
	}
	for {
		k, j, ok := plainJSONString(b, i)
		if !ok {
			return false
		}
		i = skipJSONSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		v, j, ok := plainJSONString(b, skipJSONSpace(b, i+1))
		if !ok || !w.set(k, v) {
			return false
		}
		i = skipJSONSpace(b, j)
		switch {
		case i < len(b) && b[i] == ',':
			i = skipJSONSpace(b, i+1)
		case i < len(b) && b[i] == '}':
			return skipJSONSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// set sets the field of key k to v; false for a key that is not one of
// the bridge's (encoding/json matches those case-insensitively).
func (w *wireContext) set(k, v []byte) bool {
	var f *string
	switch string(k) {
	case "actor_id":
		f = &w.ActorID
	case "actor":
		f = &w.Actor
	case "ip":
		f = &w.IP
	case "user_agent":
		f = &w.UserAgent
	case "request_id":
		f = &w.RequestID
	case "context":
		f = &w.Context
	case "db_user":
		f = &w.DBUser
	case "login_user":
		f = &w.LoginUser
	case "client_addr":
		f = &w.ClientAddr
	case "application_name":
		f = &w.ApplicationName
	default:
		return false
	}
	*f = string(v)
	return true
}

// plainJSONString returns the contents of the JSON string starting at
// b[i] and the index after it, if it has no escape or control character
// and is valid UTF-8.
func plainJSONString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, j, false
		}
	}
	return nil, len(b), false
}

// skipJSONSpace returns the index of the first byte from i on that is not
// JSON white space.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// wireEvent is audit.log_event's JSON.
type wireEvent struct {
	Action   string          `json:"action"`
	Target   string          `json:"target"`
	ObjectID *string         `json:"object_id"`
	Data     json.RawMessage `json:"data"`
	Context  wireContext     `json:"context"`
}

// message handles a logical decoding message of (sub)transaction xid (0
// outside a stream): a context for the changes that follow in its
// transaction, or an event. A non-transactional event is a transaction of
// its own, returned at once.
func (d *Decoder) message(m *pglogrepl.LogicalDecodingMessage, xid uint32) (*audit.Transaction, error) {
	switch m.Prefix {
	case ContextPrefix:
		if !m.Transactional || d.target(xid) != nil {
			return nil, nil // a context outside a transaction applies to nothing
		}
		var w wireContext
		if err := parseContext(m.Content, &w); err != nil {
			d.invalid("context message is not JSON: " + err.Error())
			w = wireContext{Context: string(m.Content)}
		}
		return nil, d.addMessage(spool.Record{Ctx: d.context(&w)}, xid)
	case EventPrefix:
		var w wireEvent
		if err := json.Unmarshal(m.Content, &w); err != nil {
			d.invalid("event message is not JSON: " + err.Error())
			w = wireEvent{Action: "event", Data: jsonString(m.Content)}
		}
		e := d.event(&w)
		if m.Transactional {
			if d.target(xid) != nil {
				return nil, nil
			}
			return nil, d.addMessage(spool.Record{Entry: e}, xid)
		}
		// Kept even if its transaction rolls back. The position to
		// acknowledge is just past the message: the server resends a
		// message that starts exactly at the start position. Its time is
		// when walscribe read it, never one the message claims: a forged
		// message must not backdate itself (nor create partitions of other
		// months).
		committed := time.Now()
		e.Seq = 1
		return &audit.Transaction{CommitLSN: m.LSN, EndLSN: m.LSN + 1, CommittedAt: committed, Entries: []audit.Entry{e}, Count: 1}, nil
	}
	return nil, nil
}

// event is the entry of an application event. What the server would
// refuse in it (NUL or invalid UTF-8 in text, what jsonb does not take, a
// key too large for its index) changes, flagged.
func (d *Decoder) event(w *wireEvent) audit.Entry {
	var e audit.Entry
	text := func(s string) string {
		t := jsonb.Text(s)
		if t != s {
			e.Flag(audit.FlagTextEscaped)
		}
		return t
	}
	action := text(strings.TrimFunc(w.Action, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }))
	switch {
	case action == "":
		action = "event"
	case audit.Reserved(action):
		// A message never makes a change entry, a gap or any record of
		// walscribe's own.
		action = "event:" + audit.NormalizeAction(action)
		e.Flag(audit.FlagReservedAction)
	}
	schema, table := "", text(w.Target)
	if s, t, ok := strings.Cut(table, "."); ok {
		schema, table = s, t
	}
	e.Schema, e.Table, e.Action, e.Ctx = schema, table, audit.Action(action), d.context(&w.Context)
	if w.ObjectID != nil {
		buf := AppendString(append(d.scratch[:0], `{"id":`...), []byte(text(*w.ObjectID)))
		buf = append(buf, '}')
		d.scratch = buf
		e.PK = d.keep(buf)
	}
	if len(w.Data) > 0 && !bytes.Equal(w.Data, []byte("null")) {
		// Unmarshal checked it is JSON; what jsonb refuses in it changes.
		if out, changed := jsonb.Sanitize(w.Data); changed {
			w.Data = out
			e.Flag(audit.FlagJSONReencoded)
		}
		if len(w.Data) > d.limits.EventData {
			w.Data = jsonb.Stub(w.Data)
			e.Flag(audit.FlagTruncated)
		}
		e.New = d.keep(w.Data)
	}
	e.MakeStorable() // the target and action are anyone's words: bounded like the rest
	return e
}

// context turns the bridge's JSON into a Context. What cannot be stored as
// given (malformed JSON in the application's context, an invalid IP) is kept
// as text under invalid_context or invalid_ip, and counted: the change is
// always recorded.
func (d *Decoder) context(w *wireContext) *audit.Context {
	c := &audit.Context{
		ActorID:         w.ActorID,
		Actor:           w.Actor,
		UserAgent:       w.UserAgent,
		RequestID:       w.RequestID,
		DBUser:          w.DBUser,
		LoginUser:       w.LoginUser,
		ApplicationName: w.ApplicationName,
	}
	var bad map[string]string
	if w.IP != "" {
		var ok bool
		if c.IP, ok = parseInet(w.IP); !ok {
			bad = map[string]string{"invalid_ip": w.IP}
			d.invalid("invalid ip: " + w.IP)
		}
	}
	c.ClientAddr, _ = parseInet(w.ClientAddr)
	if w.Context != "" {
		raw := []byte(w.Context)
		if isJSONObject(raw) {
			c.Extra = raw
		} else {
			if bad == nil {
				bad = map[string]string{}
			}
			bad["invalid_context"] = w.Context
			d.invalid("context is not a JSON object: " + clip(w.Context, 80))
		}
	}
	if bad != nil {
		obj := map[string]any{}
		if c.Extra != nil {
			json.Unmarshal(c.Extra, &obj)
		}
		for k, v := range bad {
			obj[k] = v
		}
		c.Extra, _ = json.Marshal(obj)
	}
	// What the server would refuse (NUL, invalid UTF-8, what jsonb does
	// not take, fields too long for their index) changes, and what is over
	// the limits is cut: flagged.
	c.MakeStorable()
	d.limitContext(c)
	return c
}

func (d *Decoder) invalid(what string) {
	d.InvalidContexts++
	d.LastInvalid = clip(jsonb.Text(what), 200) // it goes to the log
}

// parseInet reads an address as PostgreSQL's inet does: an address with an
// optional prefix length ("203.0.113.7", "10.1.2.3/8", "2001:db8::1").
// Zones are not inet.
func parseInet(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, false
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p, err == nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// isJSONObject reports whether b is a JSON object (what jsonb refuses in it
// is re-encoded by Context.MakeStorable).
func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 1 && b[0] == '{' && json.Valid(b) && utf8.Valid(b)
}

// jsonString is s as a JSON string.
func jsonString(s []byte) []byte { return AppendString(nil, s) }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// pendingTrunc is a partition's TRUNCATE the bridge reported, held until
// the next message of its transaction: when that is the TRUNCATE of its
// root (which PostgreSQL streams, and whose cascade fired the bridge for
// each partition), it is dropped; otherwise it is recorded, in its place.
// In a transaction streamed while in progress, the next message may come
// in a later chunk, after other transactions' messages.
type pendingTrunc struct {
	xid    uint32 // as the change gave it (0 outside a stream)
	sub    uint32 // the (sub)transaction to record it in
	stream uint32 // the streamed transaction it belongs to (0: none)
	root   string // schema.table
	entry  audit.Entry
}

// current is the streamed transaction the message being decoded belongs
// to, 0 outside a stream.
func (d *Decoder) current() uint32 {
	if d.inStream {
		return d.streamXid
	}
	return 0
}

// holdTruncate holds the partition TRUNCATE a row of the bridge's table
// reports, with the (sub)transaction the stream gave the row.
func (d *Decoder) holdTruncate(rel *relation, c *change) error {
	if err := d.target(c.xid); err != nil {
		return err
	}
	field := func(name string) string {
		for i, col := range rel.cols {
			if col.name == name && c.new != nil && i < len(c.new.cols) && c.new.cols[i].kind == 't' {
				return string(c.new.cols[i].data)
			}
		}
		return ""
	}
	partition, rootSchema, root := field("partition"), field("root_schema"), field("root")
	if root == "" || partition == "" {
		return nil
	}
	t, ok := d.rules.For(rootSchema, root)
	if !ok || !t.Actions.Has(audit.Truncate) {
		return nil
	}
	e := audit.Entry{Schema: rootSchema, Table: root, Action: audit.Truncate, New: jsonObject("partition", partition)}
	e.Flag(audit.FlagPartitionTruncate)
	e.Class = t.Retention
	d.truncs = append(d.truncs, pendingTrunc{xid: c.xid, sub: d.curSub, stream: d.current(), root: rootSchema + "." + root, entry: e})
	return nil
}

// flushTruncs records the partition TRUNCATEs held for the transaction
// stream (0: the one not streamed), except those of roots (schema.table)
// truncated by the message that follows them.
func (d *Decoder) flushTruncs(stream uint32, roots ...string) error {
	if len(d.truncs) == 0 {
		return nil
	}
	kept := d.truncs[:0]
	for _, t := range d.truncs {
		if t.stream != stream {
			kept = append(kept, t)
			continue
		}
		if slices.Contains(roots, t.root) {
			continue
		}
		txn := d.txn
		if stream != 0 {
			st := d.streams[stream]
			if st == nil {
				continue
			}
			txn = st.txn
			// The context messages that came before the report first, in
			// the (sub)transaction of the report's row, not in that of the
			// change that follows, as a message would be; at Stream Commit
			// too, outside the stream's chunks.
			for _, r := range st.pending {
				r.Subxid = t.sub
				if err := st.txn.Add(r); err != nil {
					return err
				}
			}
			st.pending = st.pending[:0]
		}
		if txn == nil {
			return errors.New("a partition TRUNCATE reported outside a transaction")
		}
		if err := txn.Add(spool.Record{Entry: t.entry, Subxid: t.sub}); err != nil {
			return err
		}
	}
	clear(d.truncs[len(kept):])
	d.truncs = kept
	return nil
}

// jsonObject is {"k": "v"}.
func jsonObject(k, v string) []byte {
	b, _ := json.Marshal(map[string]string{k: v})
	return b
}
