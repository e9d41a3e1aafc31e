// Package rules decides, per table, what the audit trail records: which
// tables (names and glob patterns, with exclusions that always win), which
// columns are left out or masked, whether updates keep full images or only
// the changed columns, which actions are recorded. It is pure: the decoder
// asks it once per table, when the table's Relation message arrives.
package rules

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"path"
	"slices"
	"strings"

	"github.com/walscribe/walscribe/audit"
)

// Style is how a masked column is stored.
type Style uint8

const (
	// None: the column is stored as it is.
	None Style = iota
	// Hash stores the lowercase hex HMAC-SHA256 of the value's text, keyed
	// by the masking secret: equal values stay comparable, and unreadable.
	Hash
	// Redact stores the fixed string Redacted.
	Redact
)

// Redacted is what a redacted value is stored as.
const Redacted = "[redacted]"

// ParseStyle reads "hash" or "redact".
func ParseStyle(s string) (Style, error) {
	switch s {
	case "hash", "":
		return Hash, nil
	case "redact":
		return Redact, nil
	}
	return None, fmt.Errorf("mask style %q: want hash or redact", s)
}

func (s Style) String() string {
	switch s {
	case Hash:
		return "hash"
	case Redact:
		return "redact"
	}
	return "none"
}

// Diff is what an update entry keeps of the row.
type Diff uint8

const (
	// Full keeps the whole row before and after.
	Full Diff = iota
	// Changes keeps only the changed columns in old and new.
	Changes
)

// ActionSet is a set of row actions.
type ActionSet uint8

// AllActions records every row action.
const AllActions ActionSet = 1<<4 - 1

func bit(a audit.Action) ActionSet {
	switch a {
	case audit.Insert:
		return 1
	case audit.Update:
		return 2
	case audit.Delete:
		return 4
	case audit.Truncate:
		return 8
	}
	return 0
}

// Has reports whether a is in the set.
func (s ActionSet) Has(a audit.Action) bool { return s&bit(a) != 0 }

// Actions makes a set; none means every action.
func Actions(as ...audit.Action) (ActionSet, error) {
	if len(as) == 0 {
		return AllActions, nil
	}
	var s ActionSet
	for _, a := range as {
		b := bit(a)
		if b == 0 {
			return 0, fmt.Errorf("action %q: want insert, update, delete or truncate", a)
		}
		s |= b
	}
	return s, nil
}

func (s ActionSet) list() []string {
	var out []string
	for _, a := range []audit.Action{audit.Insert, audit.Update, audit.Delete, audit.Truncate} {
		if s.Has(a) {
			out = append(out, string(a))
		}
	}
	return out
}

// TableConfig is one tables entry.
type TableConfig struct {
	Name                 string           // schema.table, or glob patterns for either part
	Exclude              []string         // columns never stored
	Mask                 map[string]Style // columns stored masked
	Diff                 Diff
	Actions              ActionSet // 0 means AllActions
	Retention            string
	SkipUnchangedUpdates bool
}

// Config is what a Set is compiled from.
type Config struct {
	Tables        []TableConfig
	ExcludeTables []string // names or patterns never audited
	Secret        []byte   // keys Hash masking: the key's bytes, decoded from hex or base64
	// SkipUnchangedUpdates is for tables that no entry names.
	SkipUnchangedUpdates bool
	// DefaultRetention is the retention period of tables that no entry
	// names ("": the default class).
	DefaultRetention string
}

// Table is the rules in force for one table.
type Table struct {
	// Entry is the tables entry that matched ("public.*"); "" when no
	// entry matched and the table is recorded with the defaults.
	Entry                string
	Exclude              map[string]bool
	Mask                 map[string]Style
	Diff                 Diff
	Actions              ActionSet
	Retention            string
	SkipUnchangedUpdates bool
	secret               []byte
	mac                  hash.Hash // reused: a Table is used by one decoder at a time
	sum                  [sha256.Size]byte
}

// All is what every table gets without rules (a nil Set): every change,
// whole.
var All = &Table{Actions: AllActions}

// Set is a compiled configuration.
type Set struct {
	cfg      Config
	entries  []entry
	exclude  []pattern
	defaults *Table // for tables no entry names
}

type pattern struct {
	schema, table string
	literal       int  // characters that are not wildcards: more is more specific
	exact         bool // no wildcard at all
}

type entry struct {
	pattern
	t *Table
}

func compile(name string) (pattern, error) {
	schema, table, ok := strings.Cut(name, ".")
	if !ok {
		schema, table = "public", name
	}
	for _, p := range []string{schema, table} {
		if _, err := path.Match(p, ""); err != nil {
			return pattern{}, fmt.Errorf("%q: %w", name, err)
		}
	}
	wild := func(s string) int { return strings.Count(s, "*") + strings.Count(s, "?") + strings.Count(s, "[") }
	literal := len(schema) + len(table) - wild(schema) - wild(table)
	return pattern{schema: schema, table: table, literal: literal, exact: wild(schema)+wild(table) == 0}, nil
}

func (p pattern) match(schema, table string) bool {
	if p.exact {
		return p.schema == schema && p.table == table
	}
	return MatchName(p.schema, schema) && MatchName(p.table, table)
}

// MatchName reports whether a name (a schema's or a table's, taken whole)
// matches one part of a glob, in path.Match syntax — except that * and ?
// match a slash too, as they do in the database (GlobToRegexp): a table
// named "q1/2024" is one of public.*.
func MatchName(glob, name string) bool {
	ok, _ := path.Match(glob, strings.ReplaceAll(name, "/", "\uffff"))
	return ok
}

// New compiles a configuration.
func New(cfg Config) (*Set, error) {
	s := &Set{cfg: cfg, defaults: &Table{Actions: AllActions, SkipUnchangedUpdates: cfg.SkipUnchangedUpdates, Retention: cfg.DefaultRetention}}
	for _, tc := range cfg.Tables {
		p, err := compile(tc.Name)
		if err != nil {
			return nil, err
		}
		t := &Table{
			Entry:                tc.Name,
			Exclude:              map[string]bool{},
			Mask:                 map[string]Style{},
			Diff:                 tc.Diff,
			Actions:              tc.Actions,
			Retention:            tc.Retention,
			SkipUnchangedUpdates: tc.SkipUnchangedUpdates,
			secret:               cfg.Secret,
		}
		if t.Actions == 0 {
			t.Actions = AllActions
		}
		for _, c := range tc.Exclude {
			t.Exclude[c] = true
		}
		for c, st := range tc.Mask {
			if st == Hash && len(cfg.Secret) == 0 {
				return nil, fmt.Errorf("%s: column %s is masked with a hash, which needs masking.secret", tc.Name, c)
			}
			t.Mask[c] = st
		}
		s.entries = append(s.entries, entry{p, t})
	}
	for _, name := range cfg.ExcludeTables {
		p, err := compile(name)
		if err != nil {
			return nil, err
		}
		s.exclude = append(s.exclude, p)
	}
	return s, nil
}

// For returns the rules of a table, and false when the table is excluded
// (exclude_tables). The most specific matching entry wins: an exact name
// over any pattern, then the pattern with the most literal characters, then
// the first listed. A table no entry matches gets every change, whole: a
// table in the publication is recorded even if the configuration forgot
// it. A nil Set gives All.
func (s *Set) For(schema, table string) (*Table, bool) {
	if s == nil {
		return All, true
	}
	for _, p := range s.exclude {
		if p.match(schema, table) {
			return nil, false
		}
	}
	var best *entry
	for i := range s.entries {
		e := &s.entries[i]
		if !e.match(schema, table) {
			continue
		}
		if best == nil || e.exact && !best.exact || e.exact == best.exact && e.literal > best.literal {
			best = e
		}
	}
	if best == nil {
		return s.defaults, true
	}
	return best.t, true
}

// Tracked reports whether a table is audited: an entry matches it and no
// exclusion does.
func (s *Set) Tracked(schema, table string) bool {
	t, ok := s.For(schema, table)
	return ok && t.Entry != ""
}

// Patterns returns the tables entries and the exclusions as (schema,
// table) glob pairs, for the database-side matcher of new tables.
func (s *Set) Patterns() (include, exclude [][2]string) {
	for _, e := range s.entries {
		include = append(include, [2]string{e.schema, e.table})
	}
	for _, p := range s.exclude {
		exclude = append(exclude, [2]string{p.schema, p.table})
	}
	return include, exclude
}

// AppendMasked appends the JSON of a masked value: the hex HMAC-SHA256 of
// text for Hash, Redacted for Redact. It is not safe for concurrent use.
func (t *Table) AppendMasked(dst []byte, st Style, text []byte) []byte {
	if st == Redact {
		return append(dst, `"`+Redacted+`"`...)
	}
	if t.mac == nil {
		t.mac = hmac.New(sha256.New, t.secret)
	}
	t.mac.Reset()
	t.mac.Write(text)
	dst = append(dst, '"')
	dst = hex.AppendEncode(dst, t.mac.Sum(t.sum[:0]))
	return append(dst, '"')
}

// HMAC is the hex HMAC-SHA256 of value under secret: what a Hash-masked
// value is stored as.
func HMAC(secret, value []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(value)
	return hex.EncodeToString(m.Sum(nil))
}

// keyIDLabel is the message whose HMAC under the masking key is its key id.
const keyIDLabel = "walscribe masking key id v1"

// KeyID names a masking key without showing it: the first 16 hex digits
// (8 bytes) of HMAC-SHA256(key, "walscribe masking key id v1"), "" for no
// key. Like a masked value it is keyed, so it says nothing of the key to
// whoever cannot guess the key, and a random key of 32 bytes (what config
// accepts) cannot be guessed; the fixed label keeps it apart from the
// masked values and from any plain hash of the key.
func KeyID(key []byte) string {
	if len(key) == 0 {
		return ""
	}
	return HMAC(key, []byte(keyIDLabel))[:16]
}

// Describe is the configuration as JSON, for the record of the rules in
// force: every entry with its columns, styles, diff and actions; the secret
// only as its KeyID, so that a change of key shows without showing the key.
func (s *Set) Describe() []byte {
	type tableJSON struct {
		Name      string            `json:"name"`
		Exclude   []string          `json:"exclude,omitempty"`
		Mask      map[string]string `json:"mask,omitempty"`
		Diff      string            `json:"diff"`
		Actions   []string          `json:"actions"`
		Retention string            `json:"retention,omitempty"`
		SkipSame  bool              `json:"skip_unchanged_updates"`
	}
	out := struct {
		Tables        []tableJSON `json:"tables"`
		ExcludeTables []string    `json:"exclude_tables,omitempty"`
		KeyID         string      `json:"masking_key_id,omitempty"`
	}{ExcludeTables: s.cfg.ExcludeTables}
	for _, e := range s.entries {
		tj := tableJSON{Name: e.t.Entry, Diff: "full", Actions: e.t.Actions.list(), Retention: e.t.Retention, SkipSame: e.t.SkipUnchangedUpdates}
		if e.t.Diff == Changes {
			tj.Diff = "changes"
		}
		for c := range e.t.Exclude {
			tj.Exclude = append(tj.Exclude, c)
		}
		slices.Sort(tj.Exclude)
		if len(e.t.Mask) > 0 {
			tj.Mask = map[string]string{}
			for c, st := range e.t.Mask {
				tj.Mask[c] = st.String()
			}
		}
		out.Tables = append(out.Tables, tj)
	}
	out.KeyID = KeyID(s.cfg.Secret)
	b, _ := json.Marshal(out)
	return b
}

// EntryInfo describes one tables entry.
type EntryInfo struct {
	Name          string // as configured
	Schema, Table string // the two parts, globs or names
	Exact         bool   // no wildcard: names one table
	p             pattern
}

// Matches reports whether the entry's name or pattern matches a table
// (whether or not a more specific entry or an exclusion wins).
func (e EntryInfo) Matches(schema, table string) bool { return e.p.match(schema, table) }

// Entries lists the tables entries in configured order.
func (s *Set) Entries() []EntryInfo {
	var out []EntryInfo
	for _, e := range s.entries {
		out = append(out, EntryInfo{Name: e.t.Entry, Schema: e.schema, Table: e.table, Exact: e.exact, p: e.pattern})
	}
	return out
}

// GlobToRegexp turns one part of a glob (path.Match syntax: * ? [...] and
// \ escapes) into an anchored POSIX regular expression, for matching in
// the database.
func GlobToRegexp(glob string) string {
	var b strings.Builder
	b.WriteByte('^')
	for i := 0; i < len(glob); i++ {
		c := glob[i]
		switch c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteByte('.')
		case '[':
			j := strings.IndexByte(glob[i+1:], ']')
			if j < 0 {
				b.WriteString(`\[`)
				continue
			}
			// path.Match classes: [abc], [a-z], [^abc]; POSIX reads them alike.
			b.WriteString("[" + glob[i+1:i+1+j] + "]")
			i += j + 1
		case '\\':
			if i+1 < len(glob) {
				i++
				c = glob[i]
			}
			fallthrough
		default:
			if strings.IndexByte(`.+()|{}^$\[]*?`, c) >= 0 {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
	}
	b.WriteByte('$')
	return b.String()
}
