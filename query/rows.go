package query

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
)

// A column of an entry as reports and exports give it: its name and the
// SQL that gives it as text (CSV) and as JSON.
type column struct{ name, text, json string }

// utc is a timestamp as text: ISO 8601 in UTC, to the microsecond.
func utc(c string) string {
	return `to_char(` + c + ` AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
}

// columns are every stored column of an entry, in the trail's order.
var columns = []column{
	{"id", "e.id::text", "e.id"},
	{"commit_lsn", "e.commit_lsn::text", "e.commit_lsn::text"},
	{"seq", "e.seq::text", "e.seq"},
	{"xid", "e.xid::text", "e.xid"},
	{"committed_at", utc("e.committed_at"), utc("e.committed_at")},
	{"captured_at", utc("e.captured_at"), utc("e.captured_at")},
	{"schema_name", "e.schema_name", "e.schema_name"},
	{"table_name", "e.table_name", "e.table_name"},
	{"action", "e.action", "e.action"},
	{"pk", "e.pk::text", "e.pk"},
	{"old", "e.old::text", "e.old"},
	{"new", "e.new::text", "e.new"},
	{"changed", "array_to_json(e.changed)::text", "array_to_json(e.changed)"},
	{"actor_id", "e.actor_id", "e.actor_id"},
	{"actor", "e.actor", "e.actor"},
	{"ip", "host(e.ip)", "host(e.ip)"},
	{"user_agent", "e.user_agent", "e.user_agent"},
	{"request_id", "e.request_id", "e.request_id"},
	{"db_user", "e.db_user", "e.db_user"},
	{"client_addr", "host(e.client_addr)", "host(e.client_addr)"},
	{"application_name", "e.application_name", "e.application_name"},
	{"context", "e.context::text", "e.context"},
	{"retention_class", "e.retention_class", "e.retention_class"},
	{"flags", "array_to_json(e.flags)::text", "array_to_json(e.flags)"},
	{"login_user", "e.login_user", "e.login_user"},
}

// Columns are the names of the columns CSV gives, in order.
func Columns() []string {
	out := make([]string, len(columns))
	for i, c := range columns {
		out[i] = c.name
	}
	return out
}

// CSVSQL is the query of the entries f selects, every column as text
// (NULL as NULL), by id, in schema (an SQL identifier, quoted); limit 0
// for all of them.
func CSVSQL(schema string, f Filter, limit int) (string, []any) {
	exprs := make([]string, len(columns))
	for i, c := range columns {
		exprs[i] = c.text
	}
	return selectSQL(schema, strings.Join(exprs, ", "), f, limit)
}

// JSONSQL is the query of the entries f selects, each a JSON object as
// text, by id.
func JSONSQL(schema string, f Filter, limit int) (string, []any) {
	pairs := make([]string, len(columns))
	for i, c := range columns {
		pairs[i] = "'" + c.name + "', " + c.json
	}
	return selectSQL(schema, "json_build_object("+strings.Join(pairs, ", ")+")::text", f, limit)
}

func selectSQL(schema, exprs string, f Filter, limit int) (string, []any) {
	where, args := f.Where("e")
	q := `SELECT ` + exprs + ` FROM ` + schema + `.entries e WHERE ` + where + ` ORDER BY e.id`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	return q, args
}

// Querier runs a query: a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// WriteCSV writes the entries f selects to w as CSV, a header first; each
// row read is told to progress (nil: nobody). A cell a spreadsheet would
// take for a formula (it starts with =, +, -, @, a tab or a carriage
// return) is written after a single quote, and so is one that starts with
// a single quote: the value is the cell less one leading quote, if it has
// one. NULL and empty text are both an empty cell (JSON lines tell them
// apart). It returns the rows written.
func WriteCSV(ctx context.Context, q Querier, schema string, f Filter, w io.Writer, progress func()) (int64, error) {
	sql, args := CSVSQL(schema, f, 0)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return 0, fmt.Errorf("read the entries: %w", err)
	}
	defer rows.Close()
	cw := csv.NewWriter(w)
	if err := cw.Write(Columns()); err != nil {
		return 0, err
	}
	vals := make([]*string, len(columns))
	dest := make([]any, len(columns))
	for i := range vals {
		dest[i] = &vals[i]
	}
	record := make([]string, len(columns))
	var n int64
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return n, fmt.Errorf("read the entries: %w", err)
		}
		for i, v := range vals {
			record[i] = ""
			if v != nil {
				record[i] = CSVCell(*v)
			}
		}
		if err := cw.Write(record); err != nil {
			return n, err
		}
		n++
		if progress != nil {
			progress()
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read the entries: %w", err)
	}
	cw.Flush()
	return n, cw.Error()
}

// CSVCell is a value as WriteCSV writes it: a single quote before one a
// spreadsheet would take for a formula, or that starts with one.
func CSVCell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r'", rune(v[0])) {
		return "'" + v
	}
	return v
}

// WriteJSON writes the entries f selects to w as JSON Lines: one object
// per entry, by id. It returns the rows written.
func WriteJSON(ctx context.Context, q Querier, schema string, f Filter, w io.Writer, progress func()) (int64, error) {
	sql, args := JSONSQL(schema, f, 0)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return 0, fmt.Errorf("read the entries: %w", err)
	}
	defer rows.Close()
	var n int64
	var line []byte
	for rows.Next() {
		line = line[:0]
		if err := rows.Scan(&line); err != nil {
			return n, fmt.Errorf("read the entries: %w", err)
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return n, err
		}
		n++
		if progress != nil {
			progress()
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read the entries: %w", err)
	}
	return n, nil
}
