package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
		var pretty bytes.Buffer
		json.Indent(&pretty, body, "", "  ")
		lines := strings.Split(pretty.String(), "\n")
		for i, l := range lines {
			if i == 24 {
				d.say("    │ … (%d more lines)", len(lines)-i)
				break
			}
			d.say("    │ %s", l)
		}
	}
	d.say("\n    every read above is itself in the trail, as an event of action read; the web UI is at %s/", d.apiURL)
	return problems
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
