// Package integrity makes the audit trail tamper-evident. The entries form a
// Merkle log in the style of Certificate Transparency (RFC 6962, through
// golang.org/x/mod/sumdb/tlog): leaf i is the hash of entry id i's columns
// in a canonical, versioned encoding. This package holds the pieces that
// need no database: the leaf encoding (and the same hash as SQL, for the
// server to compute), the tree kept as a compact range, inclusion proofs
// computed while streaming the leaves, and checkpoints — origin, size and
// root in the C2SP tlog-checkpoint text form — signed as notes with Ed25519
// keys (golang.org/x/mod/sumdb/note).
package integrity

import (
	"encoding/hex"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// leafHeader starts every version 1 leaf encoding.
const leafHeader = "walscribe leaf v1\n"

// A Column is one column of the audit table entries, as the leaf encoding
// takes it.
type Column struct {
	// Name is the column's name in entries.
	Name string
	// Micros marks a timestamptz column, hashed as the number of
	// microseconds since 1970-01-01 00:00 UTC in decimal rather than as its
	// text, which depends on the session's TimeZone and DateStyle.
	Micros bool
}

// SQL is the column's element in the row whose text the leaf hashes, for
// the table aliased as alias (used as written): the column itself, or for
// a timestamptz the number of microseconds since 1970-01-01 00:00 UTC
// (its text would depend on the session's TimeZone and DateStyle). It needs
// PostgreSQL 14 or later, where extract returns an exact numeric. Every
// timestamp has a number: ±infinity gives Infinity and -Infinity, and
// numeric does not overflow where bigint would (after the year 294246), so
// an entry altered to hold such a value is found altered, not a query that
// fails.
func (c Column) SQL(alias string) string {
	ref := alias + "." + c.Name
	if c.Micros {
		return "pg_catalog.trunc(extract(epoch from " + ref + ") * 1000000)"
	}
	return ref
}

// columns is the version 1 encoding order; Row's length follows it.
var columns = [...]Column{
	{Name: "id"},
	{Name: "commit_lsn"},
	{Name: "seq"},
	{Name: "xid"},
	{Name: "committed_at", Micros: true},
	{Name: "captured_at", Micros: true},
	{Name: "schema_name"},
	{Name: "table_name"},
	{Name: "action"},
	{Name: "pk"},
	{Name: "old"},
	{Name: "new"},
	{Name: "changed"},
	{Name: "actor_id"},
	{Name: "actor"},
	{Name: "ip"},
	{Name: "user_agent"},
	{Name: "request_id"},
	{Name: "db_user"},
	{Name: "client_addr"},
	{Name: "application_name"},
	{Name: "context"},
	{Name: "retention_class"},
	{Name: "flags"},
	{Name: "login_user"},
}

// Columns are the columns of entries that a version 1 leaf covers, in
// encoding order. Do not modify it.
var Columns = columns[:]

// RowSQL is an SQL expression of type text: the row of Columns of the
// entry aliased as alias, in the server's text form of a row value
// (record_out): "(" and the values separated by commas, ")"; NULL as
// nothing, the empty string as "", a value with a comma, quote, backslash,
// parenthesis or white space quoted, with quotes and backslashes doubled.
// That form is unambiguous (the server parses it back), independent of the
// session's settings for these types, and made by the server in one pass.
func RowSQL(alias string) string {
	exprs := make([]string, len(columns))
	for i, c := range columns {
		exprs[i] = c.SQL(alias)
	}
	return "ROW(" + strings.Join(exprs, ", ") + ")::text"
}

// EncodeLeaf returns the version 1 encoding of an entry whose RowSQL text
// (in UTF-8) is row: "walscribe leaf v1\n" then row.
func EncodeLeaf(row string) []byte {
	return append([]byte(leafHeader), row...)
}

// LeafHash is the Merkle leaf hash of an entry whose RowSQL text is row:
// tlog.RecordHash(EncodeLeaf(row)).
func LeafHash(row string) tlog.Hash {
	return tlog.RecordHash(EncodeLeaf(row))
}

// LeafHashSQL is an SQL expression of type bytea that computes LeafHash of
// the row of entries aliased as alias, server-side. It relies on the
// session's search_path being pg_catalog, pg_temp (walscribe's), and on
// nothing else: not standard_conforming_strings, not the server encoding.
func LeafHashSQL(alias string) string {
	// The 0x00 is RecordHash's leaf prefix (RFC 6962), then the header.
	return "pg_catalog.sha256(" + bytesSQL("\x00"+leafHeader) + " || pg_catalog.convert_to(" + RowSQL(alias) + ", 'UTF8'))"
}

// bytesSQL is a bytea constant holding s, written without backslashes so
// that its meaning does not depend on standard_conforming_strings.
func bytesSQL(s string) string {
	return "pg_catalog.decode('" + hex.EncodeToString([]byte(s)) + "', 'hex')"
}
