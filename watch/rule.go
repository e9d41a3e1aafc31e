package watch

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Kind is what a watch looks for.
type Kind string

// The kinds of watch.
const (
	// Threshold fires when more than Count matching entries of one group
	// fall within Window.
	Threshold Kind = "threshold"
	// OutsideHours fires on matching entries committed outside Hours on
	// Days in TimeZone.
	OutsideHours Kind = "outside_hours"
	// Match fires on any matching entry.
	Match Kind = "match"
)

// GroupBy is what entries are grouped by: a watch counts, and fires, per
// group.
type GroupBy string

// The fields entries can be grouped by. An entry without the field (no
// context, no actor) belongs to the group of the empty value.
const (
	ByAll        GroupBy = "all" // one group for the whole watch
	ByActorID    GroupBy = "actor_id"
	ByActor      GroupBy = "actor"
	ByDBUser     GroupBy = "db_user"
	ByIP         GroupBy = "ip"          // the client as the application reports it
	ByClientAddr GroupBy = "client_addr" // the client as the database saw it (inet_client_addr())
	ByRequestID  GroupBy = "request_id"
	ByTable      GroupBy = "table" // schema.table
)

var groupBys = []string{string(ByAll), string(ByActorID), string(ByActor), string(ByDBUser), string(ByIP), string(ByClientAddr), string(ByRequestID), string(ByTable)}

// Defaults of a Rule's optional keys.
const (
	DefaultWindow         = time.Minute
	DefaultHours          = "08:00-18:00"
	DefaultDays           = "mon-fri"
	DefaultTimeZone       = "UTC"
	DefaultMaxGroups      = 10_000
	DefaultWebhookTimeout = 5 * time.Second
)

// Limits of a Rule's keys.
const (
	MinWindow    = time.Second
	MaxWindow    = 7 * 24 * time.Hour
	MaxGroups    = 1_000_000
	maxWordBytes = 256 // an action or a column name
	minSecret    = 16
)

// Rule is one watch: the entries it looks at (Tables, Actions, Columns),
// what it looks for (Kind) and where its alerts go besides the trail and
// the metrics (Webhook). In the configuration file it is one entry of the
// watches list, with the keys of the mapstructure tags; a zero value of an
// optional field takes the default named.
type Rule struct {
	// Name names the watch in alerts and in the metrics' watch label
	// (watches[i].name): 1 to 63 letters, digits, _ . and -, starting with
	// a letter or digit, unique. Required.
	Name string `mapstructure:"name"`
	// Kind is threshold, outside_hours or match (watches[i].kind).
	// Required.
	Kind Kind `mapstructure:"kind"`
	// Description is shown with the alerts (watches[i].description).
	// Default "".
	Description string `mapstructure:"description"`
	// Tables are the tables watched (watches[i].tables): names or glob
	// patterns as in tables[i].name, schema.table, a name without a dot in
	// public; an application event's target without a dot has the empty
	// schema, which only * matches. Default all tables.
	Tables []string `mapstructure:"tables"`
	// Actions are the actions watched (watches[i].actions): row actions
	// (insert, update, delete, truncate) or application event words (read,
	// exported, ...), compared exactly as stored. Default every action.
	Actions []string `mapstructure:"actions"`
	// Columns, when set, limit the watch to entries whose changed columns
	// or whose old or new image (top-level keys) hold one of them
	// (watches[i].columns). Default none: any entry.
	Columns []string `mapstructure:"columns"`
	// By is the group entries are counted in (watches[i].by): actor_id,
	// actor, db_user, ip, client_addr, request_id, table or all (actor_id,
	// actor, ip and request_id are what the application claims; db_user
	// and client_addr what the database saw). Default actor_id for
	// threshold, all for the other kinds.
	By GroupBy `mapstructure:"by"`
	// Count is the most entries of one group a threshold watch lets pass
	// within Window: it fires on the one after (watches[i].count), 1 to
	// 1000000000. Required for threshold; threshold only.
	Count int `mapstructure:"count"`
	// Window is the sliding time span a threshold watch counts over
	// (watches[i].window), 1s to 168h, in steps of a thirtieth of it (see
	// the package comment). Default 1m; threshold only.
	Window time.Duration `mapstructure:"window"`
	// Cooldown, for match and outside_hours, makes a group fire once per
	// run of matching entries no two of which are more than Cooldown apart
	// (watches[i].cooldown), up to 168h. Default 0: once per source
	// transaction holding matching entries (per group).
	Cooldown time.Duration `mapstructure:"cooldown"`
	// Hours are the working hours of an outside_hours watch, in the
	// watch's time zone (watches[i].hours): "HH:MM-HH:MM", several joined
	// by commas; start inclusive, end exclusive, 24:00 for midnight, a
	// range past midnight (22:00-06:00) allowed. Default "08:00-18:00".
	Hours string `mapstructure:"hours"`
	// Days are the working days (watches[i].days): mon tue wed thu fri
	// sat sun, ranges (mon-fri, fri-mon) and lists (mon,wed,fri). Each
	// entry is judged by the day and time of its commit in TimeZone.
	// Default "mon-fri".
	Days string `mapstructure:"days"`
	// TimeZone is the IANA time zone of Hours and Days
	// (watches[i].time_zone), e.g. Europe/Berlin; daylight saving time
	// follows it. Default "UTC".
	TimeZone string `mapstructure:"time_zone"`
	// MaxGroups bounds the groups tracked at once (watches[i].max_groups),
	// 1 to 1000000: when full, the group seen least recently is forgotten
	// (counted in walscribe_watch_groups_evicted_total). About 1 KiB each:
	// 10 MiB a watch at the default. Default 10000.
	MaxGroups int `mapstructure:"max_groups"`
	// Webhook, when set, is an http(s) URL each alert is POSTed to as JSON
	// (watches[i].webhook). Default "" (none).
	Webhook string `mapstructure:"webhook"`
	// WebhookSecret signs the webhook's requests (watches[i].webhook_secret):
	// at least 16 characters. Default "": Config.WebhookSecret, and no
	// signature when that is empty too.
	WebhookSecret string `mapstructure:"webhook_secret"`
	// WebhookTimeout bounds one request (watches[i].webhook_timeout), 100ms
	// to 1m. Default 5s.
	WebhookTimeout time.Duration `mapstructure:"webhook_timeout"`
}

// Normalized returns r with every optional key that is unset given its
// default.
func (r Rule) Normalized() Rule {
	if r.Tables == nil {
		r.Tables = []string{"*.*"}
	}
	if r.By == "" {
		r.By = ByAll
		if r.Kind == Threshold {
			r.By = ByActorID
		}
	}
	if r.Kind == Threshold && r.Window == 0 {
		r.Window = DefaultWindow
	}
	if r.Kind == OutsideHours {
		r.Hours = orDefault(r.Hours, DefaultHours)
		r.Days = orDefault(r.Days, DefaultDays)
		r.TimeZone = orDefault(r.TimeZone, DefaultTimeZone)
	}
	if r.MaxGroups == 0 {
		r.MaxGroups = DefaultMaxGroups
	}
	if r.Webhook != "" && r.WebhookTimeout == 0 {
		r.WebhookTimeout = DefaultWebhookTimeout
	}
	return r
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Problem is one thing wrong with the watches, at one key.
type Problem struct {
	Key string // as in the file: "watches[2].window"
	Msg string // what is wrong and how to fix it
}

func (p Problem) Error() string { return p.Key + ": " + p.Msg }

var watchName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Problems checks rules, the list at key (as in "watches"), and returns
// every problem found, each naming its key (watches[2].window) and saying
// how to fix it.
func Problems(key string, rules []Rule) []Problem {
	var out []Problem
	seen := make(map[string]int, len(rules))
	for i, r := range rules {
		prefix := fmt.Sprintf("%s[%d]", key, i)
		check := func(k, msg string) {
			if msg != "" {
				out = append(out, Problem{prefix + "." + k, msg})
			}
		}
		switch {
		case r.Name == "":
			check("name", "required: name the watch, e.g. bulk_deletes; alerts and the metric label carry it")
		case !watchName.MatchString(r.Name):
			check("name", fmt.Sprintf("%q: use 1 to 63 letters, digits, _ . and -, starting with a letter or digit, e.g. bulk_deletes", clip(r.Name)))
		default:
			if first, dup := seen[r.Name]; dup {
				check("name", fmt.Sprintf("%s is also the name of %s[%d]: give each watch a name of its own", r.Name, key, first))
			} else {
				seen[r.Name] = i
			}
		}
		r.problems(check)
	}
	return out
}

func (r Rule) problems(check func(key, msg string)) {
	switch r.Kind {
	case Threshold, OutsideHours, Match:
	case "":
		check("kind", "required: threshold (more than count entries within window), outside_hours or match")
	default:
		check("kind", fmt.Sprintf("%q is not a kind of watch: use threshold, outside_hours or match", clip(string(r.Kind))))
	}
	checkList(check, "tables", r.Tables, "table names or patterns such as public.orders or billing.*, or leave the key out for every table")
	for j, t := range r.Tables {
		if t != "" {
			check(fmt.Sprintf("tables[%d]", j), checkPattern(t))
		}
	}
	checkList(check, "actions", r.Actions, "actions such as delete or read, or leave the key out for every action")
	checkList(check, "columns", r.Columns, "column names such as card_number, or leave the key out")
	if r.By != "" && !contains(groupBys, string(r.By)) {
		check("by", fmt.Sprintf("%q: use one of %s", clip(string(r.By)), strings.Join(groupBys, ", ")))
	}

	if r.Kind == Threshold {
		switch {
		case r.Count == 0:
			check("count", "required for threshold: the most entries of one group allowed within window, e.g. 100 (for any single entry, use kind: match)")
		case r.Count < 0 || r.Count > 1_000_000_000:
			check("count", fmt.Sprintf("%d: use 1 to 1000000000", r.Count))
		}
		if r.Window != 0 && (r.Window < MinWindow || r.Window > MaxWindow) {
			check("window", fmt.Sprintf("%s: use a duration from 1s to 168h, e.g. 1m, or leave the key out for 1m", r.Window))
		}
		if r.Cooldown != 0 {
			check("cooldown", "not used by threshold, which fires once per breach of count within window: remove it")
		}
	} else if r.Kind != "" {
		if r.Count != 0 {
			check("count", fmt.Sprintf("only for kind threshold: remove it, or make the watch a threshold (%s fires on every matching transaction, or once per cooldown)", r.Kind))
		}
		if r.Window != 0 {
			check("window", "only for kind threshold: remove it; to fire once per run of entries, set cooldown")
		}
		if r.Cooldown < 0 || r.Cooldown > MaxWindow {
			check("cooldown", fmt.Sprintf("%s: use a duration up to 168h, e.g. 10m, or 0 to fire on each transaction", r.Cooldown))
		}
	}

	if r.Kind == OutsideHours {
		if r.Hours != "" {
			if _, err := parseHours(r.Hours); err != nil {
				check("hours", err.Error())
			}
		}
		if r.Days != "" {
			if _, err := parseDays(r.Days); err != nil {
				check("days", err.Error())
			}
		}
		if r.TimeZone != "" {
			if _, err := time.LoadLocation(r.TimeZone); err != nil || r.TimeZone == "Local" {
				check("time_zone", fmt.Sprintf("%q is not an IANA time zone: write one such as UTC, Europe/Berlin or America/New_York", clip(r.TimeZone)))
			}
		}
	} else if r.Kind != "" {
		for _, k := range []struct{ key, v string }{{"hours", r.Hours}, {"days", r.Days}, {"time_zone", r.TimeZone}} {
			if k.v != "" {
				check(k.key, "only for kind outside_hours: remove it")
			}
		}
	}

	if r.MaxGroups < 0 || r.MaxGroups > MaxGroups {
		check("max_groups", fmt.Sprintf("%d: use 1 to 1000000, or leave the key out for 10000", r.MaxGroups))
	}
	r.webhookProblems(check)
}

func (r Rule) webhookProblems(check func(key, msg string)) {
	if r.Webhook == "" {
		if r.WebhookSecret != "" || r.WebhookTimeout != 0 {
			check("webhook", "required by webhook_secret and webhook_timeout: set the URL alerts are POSTed to, or remove those keys")
		}
		return
	}
	u, err := url.Parse(r.Webhook)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		check("webhook", "not an http(s) URL: write one such as https://alerts.example.com/walscribe")
	} else if u.User != nil {
		check("webhook", "holds a user or password: sign the requests with webhook_secret instead")
	}
	if r.WebhookSecret != "" && len(r.WebhookSecret) < minSecret {
		check("webhook_secret", fmt.Sprintf("too short (%d characters): use at least 16 random characters, e.g. $(openssl rand -hex 32)", len(r.WebhookSecret)))
	}
	if r.WebhookTimeout != 0 && (r.WebhookTimeout < 100*time.Millisecond || r.WebhookTimeout > time.Minute) {
		check("webhook_timeout", fmt.Sprintf("%s: use a duration from 100ms to 1m, e.g. 5s", r.WebhookTimeout))
	}
}

// checkList reports an empty list (set but holding nothing), and empty,
// overlong and repeated items.
func checkList(check func(key, msg string), key string, items []string, what string) {
	if items != nil && len(items) == 0 {
		check(key, "empty, so nothing would match: list "+what)
		return
	}
	first := make(map[string]int, len(items))
	for j, it := range items {
		k := fmt.Sprintf("%s[%d]", key, j)
		switch {
		case strings.TrimSpace(it) == "":
			check(k, "empty: write a name, or remove the item")
		case len(it) > maxWordBytes:
			check(k, fmt.Sprintf("%d bytes long: names are at most %d", len(it), maxWordBytes))
		default:
			if f, dup := first[it]; dup {
				check(k, fmt.Sprintf("%s is listed twice (also %s[%d]): remove one of them", clip(it), key, f))
			} else {
				first[it] = j
			}
		}
	}
}

// checkPattern checks a table name or pattern of path.Match syntax.
func checkPattern(name string) string {
	if _, err := compilePattern(name); err != nil {
		return fmt.Sprintf("%q is not a valid pattern: close every [ with ] and put characters or ranges between them, e.g. billing.invoice_[0-9]*", clip(name))
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// clip shortens a value quoted in a message.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return strings.ToValidUTF8(s[:64], "") + "…"
}

// Redacted returns r normalized, for logs and `walscribe config`: the
// webhook secret as "xxxxx" (or ""), and the webhook URL without its path
// and query, which often hold a token (Slack's do).
func (r Rule) Redacted() Rule {
	r = r.Normalized()
	r.Tables, r.Actions, r.Columns = slices.Clone(r.Tables), slices.Clone(r.Actions), slices.Clone(r.Columns)
	if r.WebhookSecret != "" {
		r.WebhookSecret = "xxxxx"
	}
	if r.Webhook != "" {
		if u, err := url.Parse(r.Webhook); err == nil && u.Host != "" {
			r.Webhook = u.Scheme + "://" + u.Host
			if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
				r.Webhook += "/xxxxx"
			}
		} else {
			r.Webhook = "xxxxx"
		}
	}
	return r
}
