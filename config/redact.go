package config

import (
	"github.com/walscribe/walscribe/watch"

	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Redacted returns the configuration as nested maps keyed like the file, with
// passwords in connection strings and the masking secret replaced by "xxxxx"
// (the secret is "" when not set), for logging at startup. Durations are
// strings such as "100ms" and sizes strings such as "8MiB". Each tables entry
// shows the rules in force for it, with the defaults filled in and mask_style
// as a map of every masked column to its style.
func (c *Config) Redacted() map[string]any {
	tables := make([]map[string]any, len(c.Tables))
	for i, t := range c.Tables {
		styles := make(map[string]string, len(t.Mask))
		for _, col := range t.Mask {
			styles[col] = t.MaskStyle.StyleOf(col)
		}
		diff := t.Diff
		if diff == "" {
			diff = DiffFull
		}
		acts := t.Actions
		if acts == nil {
			acts = actions()
		}
		skip := c.SkipUnchangedUpdates
		if t.SkipUnchangedUpdates != nil {
			skip = *t.SkipUnchangedUpdates
		}
		tables[i] = map[string]any{
			"name":                   t.Name,
			"exclude":                orEmpty(t.Exclude),
			"mask":                   orEmpty(t.Mask),
			"mask_style":             styles,
			"diff":                   diff,
			"actions":                slices.Clone(acts),
			"retention":              t.Retention,
			"skip_unchanged_updates": skip,
		}
	}
	secret := ""
	if c.Masking.Secret != "" {
		secret = redactedPassword
	}
	return map[string]any{
		"source": map[string]any{
			"dsn":                redactDSN(c.Source.DSN),
			"slot":               c.Source.Slot,
			"publication":        c.Source.Publication,
			"status_interval":    c.Source.StatusInterval.String(),
			"recreate_lost_slot": c.Source.RecreateLostSlot,
		},
		"sink": map[string]any{
			"dsn":               redactDSN(c.Sink.DSN),
			"schema":            c.Sink.Schema,
			"batch_max_entries": c.Sink.BatchMaxEntries,
			"batch_max_wait":    c.Sink.BatchMaxWait.String(),
			"ip_index":          c.Sink.IPIndex,
		},
		"spool": map[string]any{
			"dir":        c.Spool.Dir,
			"txn_memory": c.Spool.TxnMemory.String(),
		},
		"context": map[string]any{"prefix": c.Context.Prefix, "max_field_bytes": c.Context.MaxFieldBytes.String(),
			"max_json_bytes": c.Context.MaxJSONBytes.String(), "max_event_bytes": c.Context.MaxEventBytes.String()},
		"masking": map[string]any{"secret": secret},
		"export": map[string]any{"to": c.Export.To, "format": c.Export.Format, "schedule": c.Export.Schedule,
			"s3": map[string]any{"endpoint": c.Export.S3.Endpoint, "region": c.Export.S3.Region, "access_key": redactIfSet(c.Export.S3.AccessKey),
				"secret_key": redactIfSet(c.Export.S3.SecretKey), "insecure": c.Export.S3.Insecure, "part_size": c.Export.S3.PartSize.String()}},
		"retention": map[string]any{"default": c.Retention.Default, "schedule": c.Retention.Schedule.String(),
			"holds": c.Retention.Holds, "delete_batch": c.Retention.DeleteBatch, "archive": c.Retention.Archive},
		"integrity": map[string]any{"enabled": c.Integrity.Enabled, "signer_key_file": c.Integrity.SignerKeyFile,
			"signer_key": redactIfSet(c.Integrity.SignerKey), "checkpoint_interval": c.Integrity.CheckpointInterval.String(),
			"checkpoint_dir": c.Integrity.CheckpointDir, "leaf_hashing": c.Integrity.LeafHashing},
		"roles": map[string]any{"owner": c.Roles.Owner, "reader": c.Roles.Reader, "app": c.Roles.App,
			"revoke_emit_message": c.Roles.RevokeEmitMessage},
		"exclude_tables":         orEmpty(c.ExcludeTables),
		"skip_unchanged_updates": c.SkipUnchangedUpdates,
		"tables":                 tables,
		"http":                   map[string]any{"listen": c.HTTP.Listen, "pprof": c.HTTP.Pprof},
		"watches":                redactedWatches(c.Watches),
		"watch":                  map[string]any{"webhook_secret": redactIfSet(c.Watch.WebhookSecret), "queue_size": c.Watch.QueueSize},
		"api": map[string]any{"listen": c.API.Listen, "dsn": redactDSN(c.API.DSN), "events_dsn": redactDSN(c.API.EventsDSN),
			"restore_dsn": redactDSN(c.API.RestoreDSN), "tls_cert_file": c.API.TLSCertFile, "tls_key_file": c.API.TLSKeyFile, "secure_cookies": c.API.SecureCookies,
			"pool_size": c.API.PoolSize, "statement_timeout": c.API.StatementTimeout.String(), "rate_limit": c.API.RateLimit,
			"session_ttl": c.API.SessionTTL.String()},
		"log": map[string]any{"level": c.Log.Level, "format": c.Log.Format},
	}
}

// redactIfSet is "xxxxx" for a secret that is set, "" for one that is not.
func redactIfSet(secret string) string {
	if secret == "" {
		return ""
	}
	return redactedPassword
}

// orEmpty copies a list, as an empty list rather than nil when it has
// nothing, so that logs show [] rather than null.
func orEmpty(list []string) []string {
	return append([]string{}, list...)
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

// redactedWatches are the watches as logs may show them: secrets and the
// webhooks' paths left out.
func redactedWatches(rules []watch.Rule) []watch.Rule {
	out := make([]watch.Rule, len(rules))
	for i, r := range rules {
		out[i] = r.Redacted()
	}
	return out
}
