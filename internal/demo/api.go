package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// showAPI makes a token and asks the API (served by walscribe run) for a
// summary and the newest entries, as an auditor's script would. It
// returns what went wrong.
func (d *demo) showAPI(ctx context.Context) []string {
	args := []string{"token", "create", "--config", d.cfgPath, "--name", "demo auditor", "--role", "auditor"}
	d.say("\n▸ walscribe %s", strings.Join(args, " "))
	out, err := d.command(ctx, args...)
	if err != nil {
		return []string{fmt.Sprintf("walscribe token create failed (%v): %s", err, out)}
	}
	token := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	d.say("    │ %s…  (shown once; only its SHA-256 is stored)", token[:12])
	var problems []string
	for _, path := range []string{"/api/v1/summary?days=1&top=3", "/api/v1/entries?days=1&limit=2&action=delete"} {
		d.say("\n▸ curl -H 'Authorization: Bearer %s…' '%s%s'", token[:12], d.apiURL, path)
		body, err := get(ctx, d.apiURL+path, token)
		if err != nil {
			problems = append(problems, fmt.Sprintf("the API: %s: %v", path, err))
			continue
		}
		// One line a key (a list: one line an item), each cut to fit.
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(body, &doc); err != nil {
			problems = append(problems, fmt.Sprintf("the API: %s: %v", path, err))
			continue
		}
		keys := make([]string, 0, len(doc))
		for k := range doc {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			var items []json.RawMessage
			if json.Unmarshal(doc[k], &items) == nil && len(items) > 0 && k == "data" {
				for _, it := range items {
					d.say("    │ %s: %s", k, cut(it))
				}
				continue
			}
			d.say("    │ %s: %s", k, cut(doc[k]))
		}
	}
	d.say("\n    every read above is itself in the trail, as an event of action read; the web UI is at %s/", d.apiURL)
	return problems
}

// cut is a JSON value on one line, at most 110 characters.
func cut(v json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return string(v)
	}
	r := []rune(b.String())
	if len(r) > 110 {
		return string(r[:110]) + "…"
	}
	return string(r)
}

func get(ctx context.Context, url, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", res.Status, body)
	}
	return body, nil
}
