package config

import (
	"net/url"
	"regexp"
	"strings"
)

// Redacted returns the configuration as nested maps keyed like the file, with
// passwords in connection strings replaced by "xxxxx", for logging at
// startup. Durations are strings such as "100ms".
func (c *Config) Redacted() map[string]any {
	tables := make([]string, len(c.Tables))
	for i, t := range c.Tables {
		tables[i] = t.Name
	}
	return map[string]any{
		"source": map[string]any{
			"dsn":             redactDSN(c.Source.DSN),
			"slot":            c.Source.Slot,
			"publication":     c.Source.Publication,
			"status_interval": c.Source.StatusInterval.String(),
		},
		"sink": map[string]any{
			"dsn":               redactDSN(c.Sink.DSN),
			"schema":            c.Sink.Schema,
			"batch_max_entries": c.Sink.BatchMaxEntries,
			"batch_max_wait":    c.Sink.BatchMaxWait.String(),
		},
		"context": map[string]any{"prefix": c.Context.Prefix},
		"tables":  tables,
		"http":    map[string]any{"listen": c.HTTP.Listen},
		"log":     map[string]any{"level": c.Log.Level, "format": c.Log.Format},
	}
}

// redactedPassword replaces passwords in connection strings.
const redactedPassword = "xxxxx"

// keywordPassword finds password=... in a key=value connection string.
var keywordPassword = regexp.MustCompile(`((?:^|\s)(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)`)

// redactDSN hides the passwords in a connection string, in its URL or
// key=value form.
func redactDSN(dsn string) string {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return keywordPassword.ReplaceAllString(dsn, "${1}"+redactedPassword)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://" + redactedPassword
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), redactedPassword)
	}
	query := u.Query()
	changed := false
	for _, k := range []string{"password", "sslpassword"} {
		if query.Has(k) {
			query.Set(k, redactedPassword)
			changed = true
		}
	}
	if changed {
		u.RawQuery = query.Encode()
	}
	return u.String()
}
