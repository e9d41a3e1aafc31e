package audit

import (
	"strings"
	"testing"
)

// TestReserved: no spelling of a reserved word gets past, and ordinary
// words are not caught.
func TestReserved(t *testing.T) {
	for _, a := range []string{"insert", "UPDATE", " Delete\t", "\ninsert", "truncate\x00", "gap",
		"insert\u200b", "\ufeffinsert", "\u2060gap", "ins\u00adert", "ｉｎｓｅｒｔ", "İNSERT", "in sert", "pruned", "Rules"} {
		if !Reserved(a) {
			t.Errorf("Reserved(%q) = false", a)
		}
	}
	for _, a := range []string{"exported", "login_failed", "viewed", "inserted", "gaps", "event:update"} {
		if Reserved(a) {
			t.Errorf("Reserved(%q) = true", a)
		}
	}
}

// TestMakeStorable: what the server refuses changes, flagged; the rest
// stays as it is.
func TestMakeStorable(t *testing.T) {
	shared := &Context{ActorID: "7"}
	e := Entry{Schema: strings.Repeat("s", 3000), Table: "t\x00", Action: Insert,
		PK: []byte(`{"id": "` + strings.Repeat("k", 2000) + `"}`), New: []byte(`{"a": "\u0000", "n": 0e1073741823}`), Ctx: shared}
	if !e.MakeStorable() {
		t.Fatal("MakeStorable changed nothing")
	}
	if len(e.Schema) != MaxNameBytes || e.Table != `t\u0000` {
		t.Errorf("names: %d bytes, %q", len(e.Schema), e.Table)
	}
	if !strings.HasPrefix(string(e.PK), `{"sha256": "`) || string(e.New) != `{"a":"\\u0000","n":"0e1073741823"}` {
		t.Errorf("pk %s, new %s", e.PK, e.New)
	}
	for _, f := range []string{FlagTextClipped, FlagTextEscaped, FlagPKHashed, FlagJSONReencoded} {
		if !strings.Contains(strings.Join(e.Flags, ","), f) {
			t.Errorf("flags %v lack %s", e.Flags, f)
		}
	}
	if e.Ctx != shared || shared.Flags != nil {
		t.Error("an unchanged shared context was copied or flagged")
	}
	fine := Entry{Schema: "public", Table: "t", Action: Update, PK: []byte(`{"id": 1}`), New: []byte(`{"a": 1}`)}
	if fine.MakeStorable() || fine.Flags != nil {
		t.Errorf("a storable entry was changed: %+v", fine)
	}
}
