package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/jackc/pgx/v5"
)

// loadColumns reads each sample table's columns in table order, to show row
// images in that order rather than jsonb's.
func (d *demo) loadColumns(ctx context.Context) error {
	rows, err := d.db.Query(ctx, `SELECT c.relname::text, array_agg(a.attname::text ORDER BY a.attnum)
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
		GROUP BY 1`)
	if err != nil {
		return fmt.Errorf("read the sample tables' columns: %w", err)
	}
	d.columns = map[string][]string{}
	var table string
	var cols []string
	_, err = pgx.ForEachRow(rows, []any{&table, &cols}, func() error {
		d.columns[table] = slices.Clone(cols)
		return nil
	})
	return err
}

// entry is one row of audit.entries as the demo shows it.
type entry struct {
	id          int64
	committedAt time.Time
	action      string
	who         string // the actor the application named
	table       string
	pk          []byte
	changed     []string
	new, old    []byte
}

// showNew prints the entries stored since the last call, at most limit of
// them (the newest).
func (d *demo) showNew(ctx context.Context, limit int) error {
	var count int
	var maxID int64
	if err := d.db.QueryRow(ctx, `SELECT count(*), coalesce(max(id), 0) FROM audit.entries WHERE id > $1`, d.shown).Scan(&count, &maxID); err != nil {
		return fmt.Errorf("read audit.entries: %w", err)
	}
	if count == 0 {
		d.say("  ── audit.entries: nothing new ──")
		return nil
	}
	rows, err := d.db.Query(ctx, `SELECT id, committed_at, action, coalesce(actor, actor_id, ''), table_name, pk, coalesce(changed, '{}'), new, old
		FROM audit.entries WHERE id > $1 ORDER BY id DESC LIMIT $2`, d.shown, limit)
	if err != nil {
		return fmt.Errorf("read audit.entries: %w", err)
	}
	var entries []entry
	var e entry
	_, err = pgx.ForEachRow(rows, []any{&e.id, &e.committedAt, &e.action, &e.who, &e.table, &e.pk, &e.changed, &e.new, &e.old}, func() error {
		entries = append(entries, entry{e.id, e.committedAt, e.action, e.who, e.table,
			slices.Clone(e.pk), slices.Clone(e.changed), slices.Clone(e.new), slices.Clone(e.old)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("read audit.entries: %w", err)
	}
	slices.Reverse(entries)
	d.shown = maxID
	title := fmt.Sprintf("audit.entries: %d new", count)
	if count > len(entries) {
		title += fmt.Sprintf(", the newest %d", len(entries))
	}
	d.say("  ── %s ──", title)
	d.printEntries(entries)
	return nil
}

// printEntries prints entries as a table that fits the terminal. Below 110
// columns it leaves out the changed column (the short form shows what
// changed anyway) and milliseconds.
func (d *demo) printEntries(entries []entry) {
	idW := len("id")
	for _, e := range entries {
		idW = max(idW, len(strconv.FormatInt(e.id, 10)))
	}
	timeW, timeFormat, pkW, changedW := 12, "15:04:05.000", 18, 14
	narrow := d.width() < 110
	if narrow {
		timeW, timeFormat, pkW, changedW = 8, "15:04:05", 14, 0
	}
	const actionW, whoW, tableW = 8, 12, 11
	fixed := 2 + idW + 2 + timeW + 2 + actionW + 2 + whoW + 2 + tableW + 2 + pkW + 2
	if !narrow {
		fixed += changedW + 2
	}
	detailW := max(20, d.width()-fixed)
	row := func(id, at, action, who, table, pk, changed, detail string) {
		line := fmt.Sprintf("  %*s  %s  %s  %s  %s  %s  ", idW, id, pad(at, timeW), pad(action, actionW), pad(who, whoW), pad(table, tableW), pad(pk, pkW))
		if !narrow {
			line += pad(changed, changedW) + "  "
		}
		d.say("%s", strings.TrimRight(line+clip(detail, detailW), " "))
	}
	timeHead := "time (UTC)"
	if narrow {
		timeHead = "time"
	}
	row("id", timeHead, "action", "who", "table", "pk", "changed", "new / old")
	for _, e := range entries {
		row(strconv.FormatInt(e.id, 10), e.committedAt.UTC().Format(timeFormat), e.action, e.who, e.table,
			d.showPK(e), strings.Join(e.changed, ","), d.showDetail(e))
	}
}

func (d *demo) showPK(e entry) string {
	if d.keyColumns(e) == nil && e.pk != nil {
		return "(whole row)" // no primary key: every column is the key
	}
	return strings.Join(d.pairs(e.table, e.pk, nil, 12), " ")
}

// showDetail is a short form of an entry's row images: the new row of an
// insert, old → new of each changed column of an update (of each changed
// key, for JSON objects), the old row of a delete.
func (d *demo) showDetail(e entry) string {
	skip := d.keyColumns(e)
	switch e.action {
	case "insert":
		return "new: " + strings.Join(d.pairs(e.table, e.new, skip, 20), " ")
	case "delete":
		return "old: " + strings.Join(d.pairs(e.table, e.old, skip, 20), " ")
	case "update":
		if e.old == nil {
			return "new: " + strings.Join(d.pairs(e.table, e.new, skip, 20), " ")
		}
		if len(e.changed) == 0 {
			return "(no value changed)"
		}
		var oldRow, newRow map[string]json.RawMessage
		json.Unmarshal(e.old, &oldRow)
		json.Unmarshal(e.new, &newRow)
		var parts []string
		for _, c := range e.changed {
			parts = append(parts, diffValue(c, oldRow[c], newRow[c])...)
		}
		return strings.Join(parts, ", ")
	default:
		return strings.Join(d.pairs(e.table, e.new, nil, 20), " ")
	}
}

// diffValue shows how column name changed: "status: paid → shipped", or for
// two JSON objects each key that changed: "prefs.lang: en → de".
func diffValue(name string, old, new json.RawMessage) []string {
	var o, n map[string]json.RawMessage
	if json.Unmarshal(old, &o) != nil || json.Unmarshal(new, &n) != nil || o == nil || n == nil {
		return []string{fmt.Sprintf("%s: %s → %s", name, showValue(old, 16), showValue(new, 20))}
	}
	var keys []string
	for k := range o {
		keys = append(keys, k)
	}
	for k := range n {
		if _, ok := o[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		if string(o[k]) != string(n[k]) {
			out = append(out, fmt.Sprintf("%s.%s: %s → %s", name, k, showValue(o[k], 16), showValue(n[k], 20)))
		}
	}
	return out
}

// keyColumns are the columns the pk column already shows, unless the key is
// the whole row (a table without a primary key).
func (d *demo) keyColumns(e entry) map[string]bool {
	var pk map[string]json.RawMessage
	if json.Unmarshal(e.pk, &pk) != nil || len(pk) >= len(d.columns[e.table]) {
		return nil
	}
	skip := map[string]bool{}
	for k := range pk {
		skip[k] = true
	}
	return skip
}

// pairs renders a JSON object as name=value pairs in table column order,
// leaving out nulls and the names in skip.
func (d *demo) pairs(table string, obj []byte, skip map[string]bool, maxValue int) []string {
	if obj == nil {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return []string{string(obj)}
	}
	names := slices.Clone(d.columns[table])
	for k := range m {
		if !slices.Contains(names, k) {
			names = append(names, k)
		}
	}
	var out []string
	for _, k := range names {
		v, ok := m[k]
		if !ok || skip[k] || string(v) == "null" {
			continue
		}
		out = append(out, k+"="+showValue(v, maxValue))
	}
	return out
}

// showValue renders one JSON value briefly: strings without quotes,
// timestamps to the second when from today (UTC), else to the minute,
// anything long clipped.
func showValue(v json.RawMessage, n int) string {
	if v == nil {
		return "∅" // absent
	}
	var s string
	if len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &s) == nil {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			s = t.UTC().Format("2006-01-02 15:04")
			if t.UTC().YearDay() == time.Now().UTC().YearDay() && t.Year() == time.Now().Year() {
				s = t.UTC().Format("15:04:05")
			}
		}
		return clip(s, n)
	}
	return clip(string(v), n)
}

// clip shortens s to n characters, ending with … when cut.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n < 1 {
		return ""
	}
	r := []rune(s)
	return strings.TrimRight(string(r[:n-1]), " ") + "…"
}

// pad clips s to n characters and fills it up to n with spaces.
func pad(s string, n int) string {
	s = clip(s, n)
	return s + strings.Repeat(" ", n-utf8.RuneCountInString(s))
}

// width is the terminal's width in characters: $COLUMNS, else the
// terminal's, else 120; at most 160.
func (d *demo) width() int {
	if c, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && c >= 60 {
		return min(c, 160)
	}
	if f, ok := d.o.out.(*os.File); ok {
		var ws struct{ rows, cols, x, y uint16 }
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&ws)))
		if errno == 0 && ws.cols >= 60 {
			return min(int(ws.cols), 160)
		}
	}
	return 120
}

// plural says "1 row", "2 rows", "3 entries".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
