package jsonb

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/internal/pgtest"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &srv, pgtest.Options{})) }

// cases are documents JSON allows and jsonb may not.
var cases = []string{
	`{"a": 1}`, `[1e1000]`, `[1e131071]`, `[1e131072]`, `[0.1e131072]`, `[1e-16383]`, `[1.5e-16383]`, `[1e-16384]`,
	`[0e99999]`, `[0e1073741823]`, `[-0E+1073741823]`, `[0.0e2000000000]`, `[1e9223372036854775807]`, `[12e9223372036854775806]`, `[-1E+2]`, `[123456789e-16390]`, `[1e99999999999999999999]`,
	`["\ud800"]`, `["\udc00\ud800"]`, `["\ud800\udc00"]`, `["x\ud83d\ude00y"]`, `["\ud800\u0041"]`, `["\u0000"]`, `{"\u0000": 1}`,
	`{"a": "\\u0000"}`, `{"a":1,"a":2}`, `"plain"`, `null`, `true`, `[]`, `{}`,
	strings.Repeat("[", 999) + strings.Repeat("]", 999), strings.Repeat("[", 1001) + strings.Repeat("]", 1001),
	strings.Repeat("[", 20000) + strings.Repeat("]", 20000),
	`not json`, "[\"\xff\"]", `{"a": [1, {"b": "\u0000", "c": 1e999999}]}`, ``,
}

func storable(t *testing.T, conn *pgx.Conn, b []byte) error {
	t.Helper()
	var out string
	return conn.QueryRow(context.Background(), `SELECT $1::text::jsonb::text`, string(b)).Scan(&out)
}

// TestAgainstTheServer: what Check accepts, the server accepts; what
// Sanitize returns, the server accepts, and keeps what it can.
func TestAgainstTheServer(t *testing.T) {
	conn := pgtest.Connect(t, srv.DSN("postgres"))
	for _, c := range cases {
		b := []byte(c)
		name := c
		if len(name) > 40 {
			name = name[:40] + "…"
		}
		checked := Check(b)
		server := storable(t, conn, b)
		if checked == nil && server != nil {
			t.Errorf("%q: Check accepts it, the server refuses it: %v", name, server)
		}
		if checked != nil && server == nil && checked != ErrDepth {
			t.Errorf("%q: Check refuses it (%v), the server takes it", name, checked)
		}
		out, changed := Sanitize(b)
		if changed != (checked != nil) {
			t.Errorf("%q: Sanitize changed = %v, Check = %v", name, changed, checked)
		}
		if err := storable(t, conn, out); err != nil {
			t.Errorf("%q: sanitized to %q, which the server refuses: %v", name, out, err)
		}
		if err := Check(out); err != nil {
			t.Errorf("%q: sanitized to %q, which Check refuses: %v", name, out, err)
		}
	}
	// What is kept: structure and the other values.
	out, _ := Sanitize([]byte(`{"a": [1, {"b": "x\u0000y", "c": 1e999999}], "d": "\ud800"}`))
	if string(out) != `{"a":[1,{"b":"x\\u0000y","c":"1e999999"}],"d":"\ufffd"}` && string(out) != `{"a":[1,{"b":"x\\u0000y","c":"1e999999"}],"d":"`+"\uFFFD"+`"}` {
		t.Errorf("sanitized to %s", out)
	}
}

// FuzzSanitize: whatever comes in, what comes out is JSON that Check
// accepts, and a document Check accepts comes out unchanged.
func FuzzSanitize(f *testing.F) {
	for _, c := range cases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, changed := Sanitize(b)
		if !json.Valid(out) {
			t.Fatalf("Sanitize(%q) = %q, not JSON", b, out)
		}
		if err := Check(out); err != nil {
			t.Fatalf("Sanitize(%q) = %q, which Check refuses: %v", b, out, err)
		}
		if !changed && string(out) != string(b) {
			t.Fatalf("Sanitize(%q) changed it without saying so", b)
		}
	})
}
