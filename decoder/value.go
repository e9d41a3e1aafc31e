package decoder

import (
	"unicode/utf8"

	"github.com/walscribe/walscribe/jsonb"
)

// The renderings below assume the walsender session's settings: DateStyle=ISO,
// IntervalStyle=postgres, extra_float_digits=3, TimeZone=UTC,
// client_encoding=UTF8. Each is checked against to_jsonb on a real server in
// value_test.go.

// Kind says how a column's text value becomes JSON, as to_jsonb renders it.
type Kind uint8

const (
	// KindString renders the text as a JSON string. It is also the fallback
	// for types BuiltinType does not know, and what to_jsonb does for every
	// type not listed below: text, bytea ("\\x..."), uuid, interval, money,
	// oid, xid, time, timetz, ranges, ...
	KindString Kind = iota
	// KindNumber is int2, int4, int8, float4, float8 and numeric: the text as
	// a bare JSON number, every digit kept (never through float64). Text that
	// is not a JSON number (NaN, Infinity, -Infinity) becomes a JSON string.
	KindNumber
	// KindBool renders "t" and "f" as true and false.
	KindBool
	// KindJSON is json: the text embedded as JSON, not quoted. Text that is
	// not valid JSON becomes a JSON string.
	KindJSON
	// KindDate is date. With DateStyle=ISO its text already is the form
	// to_jsonb uses ("2024-01-02", "0044-03-15 BC", "infinity"), so it
	// renders as a JSON string of the text.
	KindDate
	// KindTimestamp is timestamp in XML Schema form: the space between date
	// and time becomes a "T" ("2024-01-02T03:04:05.123456", "... BC");
	// "infinity" and "-infinity" stay as they are.
	KindTimestamp
	// KindTimestampTZ is timestamptz in XML Schema form: like KindTimestamp,
	// and an offset in whole hours gets its minutes ("+00" becomes "+00:00").
	KindTimestampTZ
	// KindVector is int2vector and oidvector: space-separated elements ("1 2
	// 3") as a JSON array of Elem. to_jsonb treats these as arrays.
	KindVector
	// KindArray is an array literal as a JSON array of Elem: NULL becomes
	// null, a multi-dimensional array nested arrays, and bounds such as
	// "[2:3]={...}" are dropped. Text that is not an array literal becomes a
	// JSON string.
	KindArray
	// KindJSONB is jsonb: like KindJSON, but its text is jsonb's own output,
	// valid JSON by construction, so it is not parsed again (the costliest
	// check of a change otherwise). It is still checked for UTF-8, which a
	// SQL_ASCII database does not enforce.
	KindJSONB
)

// Type is what the decoder needs to know about a column type.
type Type struct {
	Kind  Kind
	Elem  *Type // element type, for KindArray and KindVector
	Delim byte  // array element delimiter (',' for all but box, which uses ';'), for KindArray
}

// The Types of built-in types. Types that render alike share one value.
var (
	typString      = Type{Kind: KindString}
	typNumber      = Type{Kind: KindNumber}
	typBool        = Type{Kind: KindBool}
	typJSON        = Type{Kind: KindJSON}
	typJSONB       = Type{Kind: KindJSONB}
	typDate        = Type{Kind: KindDate}
	typTimestamp   = Type{Kind: KindTimestamp}
	typTimestampTZ = Type{Kind: KindTimestampTZ}
	typInt2Vector  = Type{Kind: KindVector, Elem: &typNumber}
	typOIDVector   = Type{Kind: KindVector, Elem: &typString}

	arrString      = Type{Kind: KindArray, Elem: &typString, Delim: ','}
	arrBox         = Type{Kind: KindArray, Elem: &typString, Delim: ';'}
	arrNumber      = Type{Kind: KindArray, Elem: &typNumber, Delim: ','}
	arrBool        = Type{Kind: KindArray, Elem: &typBool, Delim: ','}
	arrJSON        = Type{Kind: KindArray, Elem: &typJSON, Delim: ','}
	arrJSONB       = Type{Kind: KindArray, Elem: &typJSONB, Delim: ','}
	arrDate        = Type{Kind: KindArray, Elem: &typDate, Delim: ','}
	arrTimestamp   = Type{Kind: KindArray, Elem: &typTimestamp, Delim: ','}
	arrTimestampTZ = Type{Kind: KindArray, Elem: &typTimestampTZ, Delim: ','}
	arrInt2Vector  = Type{Kind: KindArray, Elem: &typInt2Vector, Delim: ','}
	arrOIDVector   = Type{Kind: KindArray, Elem: &typOIDVector, Delim: ','}
)

// builtins holds every base, range and multirange type of pg_catalog below
// OID 10000 in PostgreSQL 15, with its array type. The arrays of the catalogs'
// row types (pg_type[], pg_attribute[], pg_proc[], pg_class[]) are left out:
// to_jsonb renders composites as objects, which this package does not do.
var builtins = map[uint32]*Type{
	16: &typBool, 1000: &arrBool, // bool
	17: &typString, 1001: &arrString, // bytea
	18: &typString, 1002: &arrString, // "char"
	19: &typString, 1003: &arrString, // name
	20: &typNumber, 1016: &arrNumber, // int8
	21: &typNumber, 1005: &arrNumber, // int2
	22: &typInt2Vector, 1006: &arrInt2Vector, // int2vector
	23: &typNumber, 1007: &arrNumber, // int4
	24: &typString, 1008: &arrString, // regproc
	25: &typString, 1009: &arrString, // text
	26: &typString, 1028: &arrString, // oid
	27: &typString, 1010: &arrString, // tid
	28: &typString, 1011: &arrString, // xid
	29: &typString, 1012: &arrString, // cid
	30: &typOIDVector, 1013: &arrOIDVector, // oidvector
	114: &typJSON, 199: &arrJSON, // json
	142: &typString, 143: &arrString, // xml
	194: &typString,                   // pg_node_tree
	600: &typString, 1017: &arrString, // point
	601: &typString, 1018: &arrString, // lseg
	602: &typString, 1019: &arrString, // path
	603: &typString, 1020: &arrBox, // box
	604: &typString, 1027: &arrString, // polygon
	628: &typString, 629: &arrString, // line
	650: &typString, 651: &arrString, // cidr
	700: &typNumber, 1021: &arrNumber, // float4
	701: &typNumber, 1022: &arrNumber, // float8
	718: &typString, 719: &arrString, // circle
	774: &typString, 775: &arrString, // macaddr8
	790: &typString, 791: &arrString, // money
	829: &typString, 1040: &arrString, // macaddr
	869: &typString, 1041: &arrString, // inet
	1033: &typString, 1034: &arrString, // aclitem
	1042: &typString, 1014: &arrString, // bpchar
	1043: &typString, 1015: &arrString, // varchar
	1082: &typDate, 1182: &arrDate, // date
	1083: &typString, 1183: &arrString, // time
	1114: &typTimestamp, 1115: &arrTimestamp, // timestamp
	1184: &typTimestampTZ, 1185: &arrTimestampTZ, // timestamptz
	1186: &typString, 1187: &arrString, // interval
	1263: &arrString,                   // cstring[]
	1266: &typString, 1270: &arrString, // timetz
	1560: &typString, 1561: &arrString, // bit
	1562: &typString, 1563: &arrString, // varbit
	1700: &typNumber, 1231: &arrNumber, // numeric
	1790: &typString, 2201: &arrString, // refcursor
	2202: &typString, 2207: &arrString, // regprocedure
	2203: &typString, 2208: &arrString, // regoper
	2204: &typString, 2209: &arrString, // regoperator
	2205: &typString, 2210: &arrString, // regclass
	2206: &typString, 2211: &arrString, // regtype
	2950: &typString, 2951: &arrString, // uuid
	2970: &typString, 2949: &arrString, // txid_snapshot
	3220: &typString, 3221: &arrString, // pg_lsn
	3361: &typString,                   // pg_ndistinct
	3402: &typString,                   // pg_dependencies
	3614: &typString, 3643: &arrString, // tsvector
	3615: &typString, 3645: &arrString, // tsquery
	3642: &typString, 3644: &arrString, // gtsvector
	3734: &typString, 3735: &arrString, // regconfig
	3769: &typString, 3770: &arrString, // regdictionary
	3802: &typJSONB, 3807: &arrJSONB, // jsonb
	3904: &typString, 3905: &arrString, // int4range
	3906: &typString, 3907: &arrString, // numrange
	3908: &typString, 3909: &arrString, // tsrange
	3910: &typString, 3911: &arrString, // tstzrange
	3912: &typString, 3913: &arrString, // daterange
	3926: &typString, 3927: &arrString, // int8range
	4072: &typString, 4073: &arrString, // jsonpath
	4089: &typString, 4090: &arrString, // regnamespace
	4096: &typString, 4097: &arrString, // regrole
	4191: &typString, 4192: &arrString, // regcollation
	4451: &typString, 6150: &arrString, // int4multirange
	4532: &typString, 6151: &arrString, // nummultirange
	4533: &typString, 6152: &arrString, // tsmultirange
	4534: &typString, 6153: &arrString, // tstzmultirange
	4535: &typString, 6155: &arrString, // datemultirange
	4536: &typString, 6157: &arrString, // int8multirange
	4600: &typString,                   // pg_brin_bloom_summary
	4601: &typString,                   // pg_brin_minmax_multi_summary
	5017: &typString,                   // pg_mcv_list
	5038: &typString, 5039: &arrString, // pg_snapshot
	5069: &typString, 271: &arrString, // xid8
}

// BuiltinType returns the Type for a built-in type OID (pg_type OIDs below
// 10000 that ship with PostgreSQL), including the array types of built-ins;
// ok is false for OIDs it does not know (the caller then resolves them
// through the catalog: domains → base type, enums → string, arrays of those
// → KindArray of the resolved element). The Type is shared: do not modify it.
func BuiltinType(oid uint32) (t *Type, ok bool) {
	t, ok = builtins[oid]
	return t, ok
}

// AppendValue appends the JSON rendering of text (the value's text output) to
// dst. Whatever text is, what it appends is valid JSON, with one exception:
// for KindJSONB text must be jsonb's own output, which is embedded as it is
// (only invalid UTF-8 and empty text become a JSON string). A nil t renders
// as KindString.
func AppendValue(dst []byte, t *Type, text []byte) []byte {
	if t == nil {
		return AppendString(dst, text)
	}
	switch t.Kind {
	case KindNumber:
		if isJSONNumber(text) {
			return append(dst, text...)
		}
	case KindBool:
		if len(text) == 1 && text[0] == 't' {
			return append(dst, "true"...)
		}
		if len(text) == 1 && text[0] == 'f' {
			return append(dst, "false"...)
		}
	case KindJSON:
		// The server validated it; checking again keeps one bad value from
		// breaking the document around it. json may hold what jsonb refuses
		// (jsonb.Check: "\u0000", lone surrogates, numbers beyond numeric,
		// deep nesting, on some versions and encodings): such a value is
		// kept as a JSON string of its text.
		if jsonb.Check(text) == nil {
			return append(dst, text...)
		}
	case KindJSONB:
		if utf8.Valid(text) && len(text) > 0 {
			return append(dst, text...)
		}
	case KindTimestamp:
		return appendTimestamp(dst, text, false)
	case KindTimestampTZ:
		return appendTimestamp(dst, text, true)
	case KindVector:
		return appendVector(dst, t, text)
	case KindArray:
		return appendArray(dst, t, text)
	}
	return AppendString(dst, text)
}

// AppendString appends text as a JSON string literal (proper escaping of
// quotes, backslash, control characters; valid UTF-8 passes through). Bytes
// that are not valid UTF-8 become U+FFFD.
func AppendString(dst []byte, text []byte) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, text)
	return append(dst, '"')
}

// appendEscaped appends s escaped for the inside of a JSON string.
func appendEscaped(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// isJSONNumber reports whether s is a number in JSON's grammar. It is the
// test to_jsonb applies to a number's text (IsValidJsonNumber).
func isJSONNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(s)
}

func skipDigits(s []byte, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

// appendTimestamp turns ISO output ("2024-01-02 03:04:05+00 BC") into the
// XML Schema form to_jsonb uses ("2024-01-02T03:04:05+00:00 BC"). An offset
// in whole hours gains ":00" when tz is set; "+05:30" and "+05:53:28" are
// already in that form. "infinity" and "-infinity" have no space and pass as
// they are.
func appendTimestamp(dst, text []byte, tz bool) []byte {
	sp := indexByte(text, ' ', 0)
	if sp < 0 || sp+1 == len(text) || !isDigit(text[sp+1]) {
		return AppendString(dst, text)
	}
	dst = append(dst, '"')
	dst = appendEscaped(dst, text[:sp])
	dst = append(dst, 'T')
	rest := text[sp+1:]
	if tz {
		// The offset starts at the first sign after the time of day and
		// runs to the " BC" suffix or the end.
		sign := -1
		for i, c := range rest {
			if c == '+' || c == '-' {
				sign = i
				break
			}
		}
		if sign >= 0 {
			end := indexByte(rest, ' ', sign)
			if end < 0 {
				end = len(rest)
			}
			dst = appendEscaped(dst, rest[:end])
			if end-sign == 3 && isDigit(rest[sign+1]) && isDigit(rest[sign+2]) {
				dst = append(dst, ':', '0', '0')
			}
			rest = rest[end:]
		}
	}
	dst = appendEscaped(dst, rest)
	return append(dst, '"')
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func indexByte(s []byte, c byte, from int) int {
	for i := from; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// appendVector renders int2vector and oidvector output ("1 2 3") as a JSON
// array of t.Elem.
func appendVector(dst []byte, t *Type, text []byte) []byte {
	dst = append(dst, '[')
	for i, first := 0, true; i < len(text); first = false {
		end := indexByte(text, ' ', i)
		if end < 0 {
			end = len(text)
		}
		if !first {
			dst = append(dst, ',')
		}
		dst = AppendValue(dst, t.Elem, text[i:end])
		i = end + 1
	}
	return append(dst, ']')
}

// appendArray renders an array literal as a JSON array of t.Elem, or text as
// a JSON string when it is not an array literal.
func appendArray(dst []byte, t *Type, text []byte) []byte {
	start := len(dst)
	dst, ok := appendArrayLiteral(dst, t, text)
	if !ok {
		return AppendString(dst[:start], text)
	}
	return dst
}

// appendArrayLiteral parses text the way array_in does and appends it as
// JSON. It accepts what array_out writes, plus the whitespace array_in
// allows around elements and braces. Ragged arrays ("{{1},2}") are not
// rejected; they render as written.
func appendArrayLiteral(dst []byte, t *Type, s []byte) ([]byte, bool) {
	elem, delim := t.Elem, t.Delim
	if elem == nil {
		elem = &typString
	}
	if delim == 0 {
		delim = ','
	}
	i := skipSpace(s, 0, delim)
	// Bounds other than the default: "[2:3][0:1]={...}".
	if i < len(s) && s[i] == '[' {
		eq := indexByte(s, '=', i)
		if eq < 0 {
			return dst, false
		}
		i = skipSpace(s, eq+1, delim)
	}
	if i >= len(s) || s[i] != '{' {
		return dst, false
	}
	const (
		afterOpen  = iota // after '{': an element, '{' or '}'
		afterDelim        // after a delimiter: an element or '{'
		afterItem         // after an element or '}': a delimiter or '}'
	)
	state, depth := afterOpen, 1
	dst = append(dst, '[')
	i++
	for {
		i = skipSpace(s, i, delim)
		if i >= len(s) {
			return dst, false
		}
		c := s[i]
		switch {
		case state == afterItem && c == delim:
			dst = append(dst, ',')
			state = afterDelim
			i++
		case c == '}' && state != afterDelim:
			dst = append(dst, ']')
			state = afterItem
			i++
			if depth--; depth == 0 {
				return dst, skipSpace(s, i, delim) == len(s)
			}
		case c == '{' && state != afterItem:
			dst = append(dst, '[')
			state = afterOpen
			depth++
			i++
		case state != afterItem:
			var ok bool
			if dst, i, ok = appendElement(dst, elem, s, i, delim); !ok {
				return dst, false
			}
			state = afterItem
		default:
			return dst, false
		}
	}
}

// appendElement renders the array element at s[i:], quoted or not, and
// returns the index just past it.
func appendElement(dst []byte, elem *Type, s []byte, i int, delim byte) ([]byte, int, bool) {
	var raw []byte
	escaped := false
	if s[i] == '"' {
		j := i + 1
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' {
				escaped = true
				j++
			}
		}
		if j >= len(s) {
			return dst, i, false
		}
		raw = s[i+1 : j]
		i = j + 1
	} else {
		// Unquoted: up to the delimiter or '}', less trailing whitespace
		// that is not escaped.
		j, end := i, i
		for ; j < len(s) && s[j] != delim && s[j] != '}'; j++ {
			switch s[j] {
			case '\\':
				escaped = true
				j++
				end = j + 1
			case '{', '"':
				return dst, i, false
			default:
				if !isSpace(s[j]) {
					end = j + 1
				}
			}
		}
		if j > len(s) {
			return dst, i, false // a backslash at the very end
		}
		raw = s[i:end]
		i = j
		if !escaped && isNULL(raw) {
			return append(dst, "null"...), i, true
		}
		if len(raw) == 0 {
			return dst, i, false
		}
	}
	if !escaped {
		return AppendValue(dst, elem, raw), i, true
	}
	// Unescape into the spare end of dst, render from there, then move the
	// rendering down over the scratch copy. If AppendValue grows dst, the
	// scratch copy stays readable in the old array.
	mark := len(dst)
	for k := 0; k < len(raw); k++ {
		if raw[k] == '\\' {
			k++
		}
		dst = append(dst, raw[k])
	}
	n := len(dst)
	dst = AppendValue(dst, elem, dst[mark:n])
	return append(dst[:mark], dst[n:]...), i, true
}

// isSpace is array_isspace: the whitespace array_in skips. The delimiter is
// never whitespace to skip.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func skipSpace(s []byte, i int, delim byte) int {
	for i < len(s) && isSpace(s[i]) && s[i] != delim {
		i++
	}
	return i
}

// isNULL reports whether an unquoted element is NULL, which array_in reads
// case-insensitively.
func isNULL(s []byte) bool {
	return len(s) == 4 && s[0]|0x20 == 'n' && s[1]|0x20 == 'u' && s[2]|0x20 == 'l' && s[3]|0x20 == 'l'
}
