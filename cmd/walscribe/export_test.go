package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/s3mem"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// TestExportCommand: walscribe export to an S3 store (checking
// signatures) whose bucket is missing fails, and the history says so; run
// again under its id alone once the bucket exists, it succeeds, the history and
// the trail record it, export list shows it, and export url prints links
// that download its archives.
func TestExportCommand(t *testing.T) {
	backend := s3mem.New()
	ts := httptest.NewServer(gofakes3.New(backend, gofakes3.WithV4Auth(map[string]string{"AKIDCLI": "cli-secret"})).Server())
	defer ts.Close()
	cfg, dsn, signerFile := retentionTrail(t, holdInvoices, fmt.Sprintf(`export:
  to: s3://trail/exports
  s3:
    endpoint: %s
    region: us-east-1
    insecure: true
`, strings.TrimPrefix(ts.URL, "http://")))
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCLI")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "cli-secret")

	out, code := walscribe(t, "export", "--config", cfg, "--days", "400", "--id", "cli-1")
	if code == 0 {
		t.Fatalf("an export to a missing bucket succeeded:\n%s", out)
	}
	if strings.Contains(out, "cli-secret") {
		t.Errorf("the secret key is in the output:\n%s", out)
	}
	conn := pgtest.Connect(t, dsn)
	state := func() string {
		var s string
		if err := conn.QueryRow(context.Background(), `SELECT state FROM audit.exports WHERE export_id = 'cli-1' ORDER BY at DESC LIMIT 1`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := state(); s != "failed" {
		t.Errorf("after the failure the history says %s", s)
	}
	if err := backend.CreateBucket(context.Background(), "trail"); err != nil {
		t.Fatal(err)
	}
	// The same filter again, relative window and all, is refused; the id
	// alone runs the export again as it was asked.
	if out, code := walscribe(t, "export", "--config", cfg, "--days", "400", "--id", "cli-1"); code == 0 || !strings.Contains(out, "another filter") {
		t.Errorf("the export's id with a filter of now: %d\n%s", code, out)
	}
	out, code = walscribe(t, "export", "--config", cfg, "--id", "cli-1")
	if code != 0 || !strings.Contains(out, "export cli-1: 305 entries in 3 archives") {
		t.Fatalf("the export run again: %d\n%s", code, out)
	}
	if s := state(); s != "succeeded" {
		t.Errorf("after the retry the history says %s", s)
	}
	if n := count(t, conn, `SELECT count(*) FROM audit.entries WHERE action = 'exported' AND schema_name = 'walscribe' AND new->>'export_id' = 'cli-1'`); n != 1 {
		t.Errorf("%d exported entries in the trail, want 1", n)
	}
	out, code = walscribe(t, "export", "list", "--config", cfg)
	if code != 0 || !regexp.MustCompile(`cli-1\s+succeeded`).MatchString(out) {
		t.Errorf("export list: %d\n%s", code, out)
	}
	out, code = walscribe(t, "export", "url", "--config", cfg, "cli-1", "--expires", "10m")
	links := strings.Fields(out)
	if code != 0 || len(links) != 4 {
		t.Fatalf("export url: %d\n%s", code, out)
	}
	for _, link := range links {
		resp, err := http.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Errorf("%s: %d, %d bytes", link, resp.StatusCode, len(body))
		}
	}
	if out, code := walscribe(t, "verify", "--config", cfg, "--key", signerFile+".pub"); code != 0 {
		t.Errorf("verify after the export: %d\n%s", code, out)
	}
}

// TestExportSchedule: with export.schedule daily, walscribe run ships the
// previous UTC day to export.to, once.
func TestExportSchedule(t *testing.T) {
	dir := t.TempDir()
	cfg, dsn, _ := retentionTrail(t, holdInvoices, fmt.Sprintf("export:\n  to: %q\n  schedule: daily\n", dir))
	startRun(t, cfg, nil)
	conn := pgtest.Connect(t, dsn)
	id := "daily-" + time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)
	eventually(t, "the daily export", 60*time.Second, func() bool {
		return count(t, conn, `SELECT count(*) FROM audit.exports WHERE export_id = $1 AND state = 'succeeded'`, id) == 1
	})
	if _, err := os.Stat(filepath.Join(dir, id, "manifest.json.sha256")); err != nil {
		t.Errorf("the export's manifest: %v", err)
	}
}
