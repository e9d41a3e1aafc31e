package decoder

import (
	"encoding/json"
	"fmt"
	"testing"
)

// contextSeeds are bridge messages as the server writes them, and variants
// the quick reading must leave to encoding/json.
// The first four are read quickly.
var contextSeeds = []string{
	`{"ip": "203.0.113.7", "actor": "Ada", "db_user": "app", "actor_id": "42", "request_id": "req-1", "user_agent": "curl/8", "client_addr": "127.0.0.1", "application_name": "web"}`,
	`{"db_user": "postgres"}`,
	`{}`,
	` { "actor_id" : "x" } `,
	`{"context": "{\"tenant\": 7}", "db_user": "app"}`,     // escapes: encoding/json
	`{"actor": "Zoë 👍", "db_user": "app"}`,                 // UTF-8 as is
	"{\"actor\": \"bad \xff byte\", \"db_user\": \"app\"}", // invalid UTF-8: encoding/json makes it U+FFFD
	`{"Actor_ID": "case", "db_user": "app"}`,               // encoding/json matches keys case-insensitively
	`{"actor_id": 42}`,                                     // not a string
	`{"actor_id": null, "db_user": "app"}`,
	`{"actor_id": "a", "actor_id": "b"}`,
	`{"extra": "ignored", "db_user": "app"}`,
	`{"actor_id": "a",}`,
	`{"actor_id": "a"} trailing`,
	`[]`,
	``,
}

// TestParseContextMatchesEncodingJSON: whatever the quick reading accepts,
// it reads as encoding/json does, and it accepts what the bridge writes.
func TestParseContextMatchesEncodingJSON(t *testing.T) {
	quick := 0
	for i, s := range contextSeeds {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var got wireContext
			if readPlainContext([]byte(s), &got) {
				quick++
				var want wireContext
				if err := json.Unmarshal([]byte(s), &want); err != nil {
					t.Errorf("%q: read quickly, but encoding/json says %v", s, err)
				} else if got != want {
					t.Errorf("%q: read quickly as %+v, encoding/json reads %+v", s, got, want)
				}
			} else if i < 4 {
				t.Errorf("%q: the bridge's usual message is not read quickly", s)
			}
			var viaParse, want wireContext
			perr, werr := parseContext([]byte(s), &viaParse), json.Unmarshal([]byte(s), &want)
			if (perr == nil) != (werr == nil) || viaParse != want {
				t.Errorf("%q: parseContext gives %+v (%v), encoding/json %+v (%v)", s, viaParse, perr, want, werr)
			}
		})
	}
	if quick == len(contextSeeds) {
		t.Error("every seed was read quickly: the fallback is not tested")
	}
}

func FuzzParseContext(f *testing.F) {
	for _, s := range contextSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got wireContext
		if !readPlainContext(b, &got) {
			return
		}
		var want wireContext
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("%q: read quickly, but encoding/json says %v", b, err)
		}
		if got != want {
			t.Fatalf("%q: read quickly as %+v, encoding/json reads %+v", b, got, want)
		}
	})
}
