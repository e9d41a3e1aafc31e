package watch

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"go.yaml.in/yaml/v3"
)

// exampleYAML is the documented shape of the watches list.
const exampleYAML = `
watches:
  - name: bulk_deletes
    kind: threshold
    description: more than 100 deletes by one actor within a minute
    tables: [public.*, billing.*]
    actions: [delete]
    by: actor_id
    count: 100
    window: 1m
    webhook: https://alerts.example.com/walscribe
    webhook_secret: 0123456789abcdef0123
    webhook_timeout: 5s
  - name: payroll_after_hours
    kind: outside_hours
    tables: [hr.payroll]
    hours: "08:00-18:00"
    days: mon-fri
    time_zone: Europe/Berlin
    cooldown: 30m
    by: db_user
  - name: masked_reads
    kind: match
    actions: [read]
    tables: [walscribe.*, billing.cards]
    columns: [card_number]
    max_groups: 1000
`

// The mapstructure tags read the documented YAML, strictly, as the
// configuration loader does.
func TestDecodeYAML(t *testing.T) {
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(exampleYAML), &raw); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Watches []Rule `mapstructure:"watches"`
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{Result: &out, ErrorUnused: true,
		DecodeHook: mapstructure.StringToTimeDurationHookFunc()})
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(raw); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Rules: out.Watches}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the example does not validate: %v", err)
	}
	w := out.Watches
	if len(w) != 3 || w[0].Count != 100 || w[0].Window != time.Minute || w[1].Cooldown != 30*time.Minute ||
		w[1].TimeZone != "Europe/Berlin" || !slices.Equal(w[2].Columns, []string{"card_number"}) || w[2].MaxGroups != 1000 {
		t.Errorf("decoded %+v", w)
	}
	if _, err := New(cfg, Deps{}); err != nil {
		t.Fatal(err)
	}
}

func TestNormalized(t *testing.T) {
	th := Rule{Name: "t", Kind: Threshold, Count: 5}.Normalized()
	if th.Window != DefaultWindow || th.By != ByActorID || !slices.Equal(th.Tables, []string{"*.*"}) || th.MaxGroups != DefaultMaxGroups {
		t.Errorf("threshold defaults: %+v", th)
	}
	oh := Rule{Name: "o", Kind: OutsideHours, Webhook: "https://x"}.Normalized()
	if oh.Hours != DefaultHours || oh.Days != DefaultDays || oh.TimeZone != DefaultTimeZone || oh.By != ByAll ||
		oh.Window != 0 || oh.Cooldown != 0 || oh.WebhookTimeout != DefaultWebhookTimeout {
		t.Errorf("outside_hours defaults: %+v", oh)
	}
}

func TestValidate(t *testing.T) {
	ok := Rule{Name: "w", Kind: Threshold, Count: 10}
	with := func(f func(*Rule)) []Rule {
		r := ok
		f(&r)
		return []Rule{r}
	}
	cases := []struct {
		name  string
		rules []Rule
		key   string // of the first problem
		says  string // part of its message
	}{
		{"valid", []Rule{ok, {Name: "m", Kind: Match}, {Name: "o", Kind: OutsideHours}}, "", ""},
		{"no name", with(func(r *Rule) { r.Name = "" }), "watches[0].name", "required"},
		{"bad name", with(func(r *Rule) { r.Name = "bulk deletes!" }), "watches[0].name", "letters, digits"},
		{"same name twice", []Rule{ok, ok}, "watches[1].name", "also the name of watches[0]"},
		{"no kind", with(func(r *Rule) { r.Kind = "" }), "watches[0].kind", "required"},
		{"unknown kind", with(func(r *Rule) { r.Kind = "ratio" }), "watches[0].kind", "not a kind of watch"},
		{"no count", with(func(r *Rule) { r.Count = 0 }), "watches[0].count", "required for threshold"},
		{"negative count", with(func(r *Rule) { r.Count = -1 }), "watches[0].count", "use 1 to"},
		{"window too short", with(func(r *Rule) { r.Window = 10 * time.Millisecond }), "watches[0].window", "from 1s to 168h"},
		{"window too long", with(func(r *Rule) { r.Window = 8 * 24 * time.Hour }), "watches[0].window", "from 1s to 168h"},
		{"cooldown on a threshold", with(func(r *Rule) { r.Cooldown = time.Minute }), "watches[0].cooldown", "not used by threshold"},
		{"count on a match", []Rule{{Name: "m", Kind: Match, Count: 3}}, "watches[0].count", "only for kind threshold"},
		{"window on a match", []Rule{{Name: "m", Kind: Match, Window: time.Minute}}, "watches[0].window", "set cooldown"},
		{"hours on a threshold", with(func(r *Rule) { r.Hours = "08:00-18:00" }), "watches[0].hours", "only for kind outside_hours"},
		{"bad hours", []Rule{{Name: "o", Kind: OutsideHours, Hours: "8-18"}}, "watches[0].hours", "HH:MM-HH:MM"},
		{"hours of no time", []Rule{{Name: "o", Kind: OutsideHours, Hours: "08:00-08:00"}}, "watches[0].hours", "no time or the whole day"},
		{"bad minutes", []Rule{{Name: "o", Kind: OutsideHours, Hours: "08:60-18:00"}}, "watches[0].hours", "not a range"},
		{"bad days", []Rule{{Name: "o", Kind: OutsideHours, Days: "monday-friday"}}, "watches[0].days", "mon tue wed"},
		{"bad time zone", []Rule{{Name: "o", Kind: OutsideHours, TimeZone: "Mars/Olympus"}}, "watches[0].time_zone", "IANA"},
		{"Local is no zone", []Rule{{Name: "o", Kind: OutsideHours, TimeZone: "Local"}}, "watches[0].time_zone", "IANA"},
		{"bad by", with(func(r *Rule) { r.By = "user" }), "watches[0].by", "actor_id"},
		{"empty tables", with(func(r *Rule) { r.Tables = []string{} }), "watches[0].tables", "leave the key out"},
		{"empty table", with(func(r *Rule) { r.Tables = []string{"public.a", " "} }), "watches[0].tables[1]", "empty"},
		{"bad pattern", with(func(r *Rule) { r.Tables = []string{"public.[a"} }), "watches[0].tables[0]", "close every ["},
		{"action twice", with(func(r *Rule) { r.Actions = []string{"delete", "delete"} }), "watches[0].actions[1]", "twice"},
		{"huge column", with(func(r *Rule) { r.Columns = []string{strings.Repeat("c", 300)} }), "watches[0].columns[0]", "at most 256"},
		{"max_groups", with(func(r *Rule) { r.MaxGroups = 2_000_000 }), "watches[0].max_groups", "1 to 1000000"},
		{"webhook not a URL", with(func(r *Rule) { r.Webhook = "alerts.example.com" }), "watches[0].webhook", "http(s) URL"},
		{"webhook with a password", with(func(r *Rule) { r.Webhook = "https://u:p@x.example" }), "watches[0].webhook", "webhook_secret"},
		{"short secret", with(func(r *Rule) { r.Webhook, r.WebhookSecret = "https://x.example", "abc" }), "watches[0].webhook_secret", "at least 16"},
		{"secret without webhook", with(func(r *Rule) { r.WebhookSecret = "0123456789abcdef0" }), "watches[0].webhook", "required by"},
		{"webhook timeout", with(func(r *Rule) { r.Webhook, r.WebhookTimeout = "https://x.example", time.Hour }), "watches[0].webhook_timeout", "100ms to 1m"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps := Problems("watches", c.rules)
			if c.key == "" {
				if len(ps) > 0 {
					t.Fatalf("problems: %v", ps)
				}
				return
			}
			if len(ps) == 0 {
				t.Fatal("no problem found")
			}
			if ps[0].Key != c.key || !strings.Contains(ps[0].Msg, c.says) {
				t.Errorf("%v\nwant %s: …%s…", ps[0], c.key, c.says)
			}
			cfg := Config{Rules: c.rules}
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.key+": ") {
				t.Errorf("Validate: %v", err)
			}
			if _, err := New(cfg, Deps{}); err == nil {
				t.Error("New took an invalid configuration")
			}
		})
	}
}

func TestParseDays(t *testing.T) {
	for in, want := range map[string][]string{
		"mon-fri":     {"mon", "tue", "wed", "thu", "fri"},
		"fri-mon":     {"sun", "mon", "fri", "sat"},
		"mon,wed,Fri": {"mon", "wed", "fri"},
		"sat":         {"sat"},
		"mon-sun":     dayNames,
	} {
		set, err := parseDays(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var got []string
		for i, d := range dayNames {
			if set&(1<<i) != 0 {
				got = append(got, d)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", in, got, want)
		}
	}
}

func TestRedacted(t *testing.T) {
	r := Rule{Name: "w", Kind: Match, Webhook: "https://hooks.example.com/services/T0/B0/token?x=1", WebhookSecret: "0123456789abcdef0123"}.Redacted()
	if r.Webhook != "https://hooks.example.com/xxxxx" || r.WebhookSecret != "xxxxx" || r.By != ByAll {
		t.Errorf("%+v", r)
	}
	if r := (Rule{Name: "w", Kind: Match, Webhook: "http://10.0.0.1:8080"}).Redacted(); r.Webhook != "http://10.0.0.1:8080" {
		t.Errorf("%q", r.Webhook)
	}
}
