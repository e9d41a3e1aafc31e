// Package query selects entries of the trail: one filter, the same for
// reports, exports and the API, turned into SQL with parameters, always
// bounded in time so that only the months it covers are read.
package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// A Filter selects entries. Since and Until bound committed_at (Since
// included, Until excluded) and are required; every other field is
// optional, and all that are set must hold.
type Filter struct {
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	Tables    []string  `json:"tables,omitempty"`  // schema.table (a name without a dot is in public); any of them
	Actions   []string  `json:"actions,omitempty"` // any of them
	ActorID   string    `json:"actor_id,omitempty"`
	Actor     string    `json:"actor,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	Xid       int64     `json:"xid,omitempty"` // 0: any
	DBUser    string    `json:"db_user,omitempty"`
	IP        string    `json:"ip,omitempty"`        // an address, or a network in CIDR form (the entry's ip inside it)
	PK        string    `json:"pk,omitempty"`        // a JSON object: the row key, as the entry's pk holds it
	Changed   string    `json:"changed,omitempty"`   // a column among the entry's changed columns
	AfterID   int64     `json:"after_id,omitempty"`  // only entries with a larger id (keyset pagination); 0: from the first
	BeforeID  int64     `json:"before_id,omitempty"` // only entries with a smaller id (keyset pagination, newest first); 0: from the newest
	Classes   []string  `json:"classes,omitempty"`   // retention classes; any of them
}

// Days is the filter of the last n days up to now.
func Days(n int, now time.Time) Filter {
	return Filter{Since: now.Add(-time.Duration(n) * 24 * time.Hour), Until: now.Add(time.Second)}
}

// MaxWindow is the longest time a filter may cover.
const MaxWindow = 100 * 366 * 24 * time.Hour

// Check reports what is wrong with a filter, naming the field.
func (f Filter) Check() error {
	var problems []string
	switch {
	case f.Since.IsZero() || f.Until.IsZero():
		problems = append(problems, "a time window is required (since and until, or days)")
	case !f.Since.Before(f.Until):
		problems = append(problems, fmt.Sprintf("since (%s) must be before until (%s)", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339)))
	case f.Until.Sub(f.Since) > MaxWindow:
		problems = append(problems, "the time window is longer than 100 years")
	}
	for _, t := range f.Tables {
		if _, tb := SplitTable(t); tb == "" {
			problems = append(problems, fmt.Sprintf("table %q: write schema.table, e.g. public.orders", t))
		}
	}
	if f.IP != "" {
		if _, err := parseIP(f.IP); err != nil {
			problems = append(problems, fmt.Sprintf("ip %q: an address (10.0.0.7) or a network (10.0.0.0/8)", f.IP))
		}
	}
	if f.PK != "" && (!strings.HasPrefix(strings.TrimSpace(f.PK), "{") || !json.Valid([]byte(f.PK))) {
		problems = append(problems, fmt.Sprintf(`pk %q: a JSON object of the key's columns, e.g. {"id": 42}`, f.PK))
	}
	if f.Xid < 0 || f.AfterID < 0 || f.BeforeID < 0 {
		problems = append(problems, "xid and the cursor are not negative")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func parseIP(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("an address with a zone is not stored")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// SplitTable splits schema.table (public when there is no dot).
func SplitTable(t string) (schema, table string) {
	if s, tb, ok := strings.Cut(t, "."); ok {
		return s, tb
	}
	return "public", t
}

// Where is the filter as an SQL condition on the entries aliased alias,
// with its parameters numbered from $1: the caller's own come after them.
func (f Filter) Where(alias string) (string, []any) {
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	col := func(name string) string { return alias + "." + name }
	conds = append(conds, col("committed_at")+" >= "+arg(f.Since), col("committed_at")+" < "+arg(f.Until))
	if len(f.Tables) == 1 {
		// Equalities, which the row-history index serves.
		s, tb := SplitTable(f.Tables[0])
		conds = append(conds, col("schema_name")+" = "+arg(s), col("table_name")+" = "+arg(tb))
	} else if len(f.Tables) > 1 {
		var schemas, tables []string
		for _, t := range f.Tables {
			s, tb := SplitTable(t)
			schemas, tables = append(schemas, s), append(tables, tb)
		}
		conds = append(conds, "("+col("schema_name")+", "+col("table_name")+") IN (SELECT * FROM unnest("+arg(schemas)+"::text[], "+arg(tables)+"::text[]))")
	}
	if len(f.Actions) > 0 {
		conds = append(conds, col("action")+" = ANY ("+arg(f.Actions)+"::text[])")
	}
	for _, eq := range []struct{ column, value string }{
		{"actor_id", f.ActorID}, {"actor", f.Actor}, {"request_id", f.RequestID}, {"db_user", f.DBUser},
	} {
		if eq.value != "" {
			conds = append(conds, col(eq.column)+" = "+arg(eq.value))
		}
	}
	if f.Xid != 0 {
		conds = append(conds, col("xid")+" = "+arg(f.Xid))
	}
	if f.IP != "" {
		conds = append(conds, col("ip")+" <<= "+arg(f.IP)+"::inet")
	}
	if f.PK != "" {
		conds = append(conds, col("pk")+" = "+arg(f.PK)+"::jsonb")
	}
	if f.Changed != "" {
		conds = append(conds, col("changed")+" @> ARRAY["+arg(f.Changed)+"::text]")
	}
	if f.AfterID > 0 {
		conds = append(conds, col("id")+" > "+arg(f.AfterID))
	}
	if f.BeforeID > 0 {
		conds = append(conds, col("id")+" < "+arg(f.BeforeID))
	}
	if len(f.Classes) > 0 {
		conds = append(conds, col("retention_class")+" = ANY ("+arg(f.Classes)+"::text[])")
	}
	return strings.Join(conds, " AND "), args
}
