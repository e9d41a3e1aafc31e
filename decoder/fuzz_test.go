package decoder

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// fuzzKinds are the Kinds whose rendering is valid JSON whatever the text.
// KindJSONB is not among them: it trusts jsonb's output to be JSON
// (TestJSONBRendering checks what it does with text that is not).
var fuzzKinds = []Kind{KindString, KindNumber, KindBool, KindJSON, KindDate, KindTimestamp, KindTimestampTZ, KindVector, KindArray}

// fuzzType builds a Type from fuzzed bytes: any Kind, and for arrays and
// vectors any element Kind (one level of nesting, as int2vector[] has) and
// any delimiter byte (CREATE TYPE accepts any as DELIMITER).
func fuzzType(kind, elemKind, delim byte) *Type {
	kinds := byte(len(fuzzKinds))
	t := &Type{Kind: fuzzKinds[kind%kinds]}
	if t.Kind == KindArray || t.Kind == KindVector {
		e := &Type{Kind: fuzzKinds[elemKind%kinds]}
		if e.Kind == KindArray || e.Kind == KindVector {
			e.Elem = &typString
			e.Delim = ','
		}
		t.Elem = e
		switch delim % 4 {
		case 0:
			t.Delim = ','
		case 1:
			t.Delim = ';'
		case 2:
			t.Delim = 0 // the zero value: treated as ','
		default:
			t.Delim = delim
		}
	}
	return t
}

// FuzzAppendValue checks that whatever text arrives, for any Kind, the
// rendering is valid JSON in valid UTF-8, and AppendValue leaves dst's
// existing bytes alone.
func FuzzAppendValue(f *testing.F) {
	// Seeds: the text forms of the golden cases, with the Kinds they need.
	seeds := []struct {
		text string
		typ  *Type
	}{
		{"9007199254740993", &typNumber},
		{"NaN", &typNumber},
		{"-Infinity", &typNumber},
		{"1e-310", &typNumber},
		{"-0", &typNumber},
		{"t", &typBool},
		{"f", &typBool},
		{`{"b": [1, 2, {"c": null}], "a": {"x": true}}`, &typJSON},
		{`{"s": "\u00e9\ud83d\ude00 \u0001"}`, &typJSON},
		{`{"a":"\u0000"}`, &typJSON},
		{"\"\xf5\"", &typJSON},
		{"0044-03-15 BC", &typDate},
		{"2024-01-02 03:04:05.123456", &typTimestamp},
		{"0044-03-15 12:00:00 BC", &typTimestamp},
		{"2024-06-30 18:29:59.5+00", &typTimestampTZ},
		{"0100-02-03 04:05:06+05:53:28 BC", &typTimestampTZ},
		{"infinity", &typTimestampTZ},
		{"1 2 3", &typInt2Vector},
		{"", &typInt2Vector},
		{"23 25", &typOIDVector},
		{`{a,NULL,"with \"quotes\"","with,comma","{braces}","back\\slash","","NULL",null," spaced ","ü👍"}`, &arrString},
		{`{{1,2},{3,4}}`, &arrNumber},
		{`[0:1][-1:0]={{1,2},{3,4}}`, &arrNumber},
		{`{}`, &arrNumber},
		{`{1.50,NaN,Infinity,-Infinity,NULL}`, &arrNumber},
		{`{"{\"a\": [1, {\"b\": \"c,d\"}]}","\"s\"",9007199254740993,null,NULL}`, &arrJSON},
		{`{"2024-01-02 01:04:05+00",infinity,-infinity,"0044-03-15 00:00:00+00 BC",NULL}`, &arrTimestampTZ},
		{`{(1,1),(0,0);(2,2),(-1,-1)}`, &arrBox},
		{`{t,f,NULL}`, &arrBool},
		{`{"1 2",3}`, &arrInt2Vector},
		{"hello \"world\"\n\t\x01\x7f\xff", &typString},
	}
	for _, s := range seeds {
		delim := s.typ.Delim
		if delim == 0 {
			delim = ','
		}
		var elem byte
		if s.typ.Elem != nil {
			elem = byte(s.typ.Elem.Kind)
		}
		f.Add([]byte(s.text), byte(s.typ.Kind), elem, delim)
	}
	for _, c := range valueCases {
		f.Add([]byte(c.expr), byte(KindArray), byte(KindString), byte(','))
	}
	f.Fuzz(func(t *testing.T, text []byte, kind, elemKind, delim byte) {
		typ := fuzzType(kind, elemKind, delim)
		prefix := []byte(`[1,`)
		dst := append(make([]byte, 0, 8), prefix...)
		out := AppendValue(dst, typ, text)
		if !bytes.Equal(out[:len(prefix)], prefix) {
			t.Fatalf("AppendValue changed dst's existing bytes: %q", out)
		}
		got := out[len(prefix):]
		if !json.Valid(got) {
			t.Fatalf("AppendValue(kind %d, elem %+v, delim %q, %q) = %q: not valid JSON", typ.Kind, typ.Elem, typ.Delim, text, got)
		}
		if !utf8.Valid(got) {
			t.Fatalf("AppendValue(kind %d, %q) = %q: not valid UTF-8", typ.Kind, text, got)
		}
		// A nil Type renders as KindString.
		if s := AppendValue(nil, nil, text); !bytes.Equal(s, AppendString(nil, text)) {
			t.Fatalf("AppendValue(nil type, %q) = %q, want AppendString's %q", text, s, AppendString(nil, text))
		}
	})
}

// TestJSONBRendering: jsonb's output is embedded as it is, and what jsonb
// never outputs (invalid UTF-8, which a SQL_ASCII database lets through;
// empty text) becomes a JSON string, so that the entry stays storable.
func TestJSONBRendering(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
		typ              *Type
	}{
		{"object", `{"a": [1, {"b": "c,d"}], "n": 9007199254740993}`, `{"a": [1, {"b": "c,d"}], "n": 9007199254740993}`, &typJSONB},
		{"invalid UTF-8", "\"caf\xe9\"", `"\"caf\ufffd\""`, &typJSONB},
		{"empty", "", `""`, &typJSONB},
		{"array element", `{"{\"a\": 1}","[1, 2]",NULL}`, `[{"a": 1},[1, 2],null]`, &arrJSONB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(AppendValue(nil, tc.typ, []byte(tc.text)))
			if got != tc.want {
				t.Fatalf("AppendValue(%q) = %s, want %s", tc.text, got, tc.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("AppendValue(%q) = %s: not valid JSON", tc.text, got)
			}
		})
	}
}
