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
	"encoding/binary"
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

// SQL is the expression that projects the column of the table aliased as
// alias (used as written) to the text the leaf encoding hashes. It needs
// PostgreSQL 14 or later, where extract returns an exact numeric. Every
// timestamp has a text: ±infinity gives "Infinity" and "-Infinity", and
// numeric does not overflow where bigint would (after the year 294246), so
// an entry altered to hold such a value is found altered, not a query that
// fails.
func (c Column) SQL(alias string) string {
	ref := alias + "." + c.Name
	if c.Micros {
		return "pg_catalog.trunc(extract(epoch from " + ref + ") * 1000000)::text"
	}
	return ref + "::text"
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

// Row is one entry as Projection selects it: each column's text in UTF-8,
// in Columns order, nil for NULL. The texts are UTF-8 only on a connection
// whose client_encoding is UTF8 (pgx sends none: the server then uses the
// database's encoding).
type Row [len(columns)]*string

// ScanDest returns pointers to the row's fields, to scan a row selected
// with Projection into (a NULL scans as nil).
func (r *Row) ScanDest() []any {
	dest := make([]any, len(r))
	for i := range r {
		dest[i] = &r[i]
	}
	return dest
}

// Projection is the select list of Columns for the table aliased as alias,
// for SELECT <projection> FROM entries alias.
func Projection(alias string) string {
	exprs := make([]string, len(columns))
	for i, c := range columns {
		exprs[i] = c.SQL(alias)
	}
	return strings.Join(exprs, ", ")
}

// EncodeLeaf returns the version 1 encoding of r: "walscribe leaf v1\n",
// then for each column a byte 0x00 for NULL, or 0x01 followed by the
// length of the text in bytes as a 4-byte big-endian unsigned integer and
// the text.
func EncodeLeaf(r Row) []byte {
	n := len(leafHeader)
	for _, v := range r {
		n++
		if v != nil {
			n += 4 + len(*v)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, leafHeader...)
	for _, v := range r {
		if v == nil {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = binary.BigEndian.AppendUint32(b, uint32(len(*v)))
		b = append(b, *v...)
	}
	return b
}

// LeafHash is the Merkle leaf hash of r: tlog.RecordHash(EncodeLeaf(r)).
func LeafHash(r Row) tlog.Hash {
	return tlog.RecordHash(EncodeLeaf(r))
}

// LeafHashSQL is an SQL expression of type bytea that computes LeafHash of
// the row of entries aliased as alias, server-side. It relies on the
// session's search_path being pg_catalog, pg_temp (walscribe's), and on
// nothing else: not standard_conforming_strings, not the server encoding.
func LeafHashSQL(alias string) string {
	var b strings.Builder
	// The 0x00 is RecordHash's leaf prefix (RFC 6962), then the header.
	b.WriteString("pg_catalog.sha256(" + bytesSQL("\x00"+leafHeader))
	for _, c := range columns {
		text := "pg_catalog.convert_to(" + c.SQL(alias) + ", 'UTF8')"
		b.WriteString("\n || CASE WHEN " + alias + "." + c.Name + " IS NULL THEN " + bytesSQL("\x00") +
			" ELSE " + bytesSQL("\x01") + " || pg_catalog.int4send(pg_catalog.octet_length(" + text + ")) || " + text + " END")
	}
	b.WriteString(")")
	return b.String()
}

// bytesSQL is a bytea constant holding s, written without backslashes so
// that its meaning does not depend on standard_conforming_strings.
func bytesSQL(s string) string {
	return "pg_catalog.decode('" + hex.EncodeToString([]byte(s)) + "', 'hex')"
}
