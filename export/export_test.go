package export

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/s3mem"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/migrations"
	"github.com/walscribe/walscribe/query"
	"github.com/walscribe/walscribe/sink"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &srv, pgtest.Options{})) }

// newTrail writes entries over three months (values with quotes,
// backslashes, line breaks and non-ASCII text) and returns the DSN.
func newTrail(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	dsn := srv.NewDB(t)
	conn := pgtest.Connect(t, dsn)
	if _, err := migrations.Apply(ctx, conn, "audit"); err != nil {
		t.Fatal(err)
	}
	s := sink.NewPostgres(sink.Config{DSN: dsn, Schema: "audit", Slot: "test", BatchMaxEntries: 1000, BatchMaxWait: time.Second}, zap.NewNop())
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	now := time.Now().UTC()
	lsn := pglogrepl.LSN(0x1000000)
	for i := range 90 {
		at := now.AddDate(0, 0, -i)
		tx := &audit.Transaction{Xid: uint32(100 + i), CommitLSN: lsn, EndLSN: lsn + 0x100, CommittedAt: at}
		lsn += 0x1000
		for j := range 3 {
			note := fmt.Sprintf(`row %d "quoted" \back\slash, line\nbreak é 😀 =1+2`, j)
			doc, _ := json.Marshal(map[string]any{"id": i*10 + j, "note": note})
			tx.Entries = append(tx.Entries, audit.Entry{Seq: int32(j + 1), Schema: "public", Table: "orders", Action: audit.Insert,
				PK: fmt.Appendf(nil, `{"id":%d}`, i*10+j), New: doc, Ctx: &audit.Context{ActorID: "=cmd|' /C calc'!A0", UserAgent: "a\tb\r\nc"}})
		}
		if err := s.Write(ctx, []*audit.Transaction{tx}); err != nil {
			t.Fatal(err)
		}
	}
	return dsn
}

// fakeS3 is an in-process S3 that checks V4 signatures (and presigned
// links' expiry), with the bucket audit.
func fakeS3(t *testing.T) (S3Config, *s3mem.Backend) {
	t.Helper()
	backend := s3mem.New()
	faker := gofakes3.New(backend, gofakes3.WithV4Auth(map[string]string{"AKIDTEST": "secret-test-key"}))
	ts := httptest.NewServer(faker.Server())
	t.Cleanup(ts.Close)
	if err := backend.CreateBucket(context.Background(), "audit"); err != nil {
		t.Fatal(err)
	}
	return S3Config{Endpoint: strings.TrimPrefix(ts.URL, "http://"), Region: "us-east-1", AccessKey: "AKIDTEST", SecretKey: "secret-test-key",
		Insecure: true, PartSize: 5 << 20}, backend
}

// checkExport reads every archive of res back from dest, and compares its
// entries, byte for byte, with what the trail gives for the same filter
// (query.WriteJSON), and every hash with the manifests and sidecars.
func checkExport(t *testing.T, conn *pgx.Conn, dest Destination, req Request, res *Result) {
	t.Helper()
	ctx := context.Background()
	var total bytes.Buffer
	if _, err := query.WriteJSON(ctx, conn, `"audit"`, req.Filter, &total, nil); err != nil {
		t.Fatal(err)
	}
	var entries int64
	for _, sh := range res.Shards {
		archive := read(t, dest, sh.Key)
		if sum := sha256.Sum256(archive); hex.EncodeToString(sum[:]) != sh.SHA256 {
			t.Errorf("%s: SHA-256 %x, the result says %s", sh.Key, sum, sh.SHA256)
		}
		if sha, size, ok, err := dest.Stored(ctx, sh.Key); err != nil || !ok || sha != sh.SHA256 || size != int64(len(archive)) {
			t.Errorf("%s: the sidecar says %s, %v, %v", sh.Key, sha, ok, err)
		}
		zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
		if err != nil {
			t.Fatalf("%s: %v", sh.Key, err)
		}
		files := map[string][]byte{}
		for _, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			files[f.Name], _ = io.ReadAll(rc)
			rc.Close()
		}
		var m manifest
		if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
			t.Fatalf("%s: manifest: %v", sh.Key, err)
		}
		data := files["entries.jsonl"]
		if sum := sha256.Sum256(data); len(m.Files) != 1 || m.Files[0].SHA256 != hex.EncodeToString(sum[:]) || m.Files[0].Bytes != int64(len(data)) {
			t.Errorf("%s: manifest %+v, entries.jsonl has %d bytes, SHA-256 %x", sh.Key, m.Files, len(data), sum)
		}
		if m.Entries != sh.Entries || m.ExportID != req.ID || m.FirstID != sh.FirstID {
			t.Errorf("%s: manifest %+v, shard %+v", sh.Key, m, sh)
		}
		// The month's entries, as the trail gives them.
		f := req.Filter
		month, _ := time.Parse("2006-01", sh.Month)
		f.Since, f.Until = maxTime(f.Since, month), minTime(f.Until, month.AddDate(0, 1, 0))
		var want bytes.Buffer
		if _, err := query.WriteJSON(ctx, conn, `"audit"`, f, &want, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, want.Bytes()) {
			t.Errorf("%s: its entries (%d bytes) differ from the trail's (%d bytes)", sh.Key, len(data), want.Len())
		}
		entries += sh.Entries
	}
	if entries != res.Entries || int64(strings.Count(total.String(), "\n")) != entries {
		t.Errorf("%d entries in the archives, the result says %d, the trail has %d", entries, res.Entries, strings.Count(total.String(), "\n"))
	}
	var top manifest
	if err := json.Unmarshal(read(t, dest, res.Manifest), &top); err != nil || len(top.Shards) != len(res.Shards) || top.Entries != res.Entries {
		t.Errorf("the export's manifest: %+v, %v", top, err)
	}
}

func read(t *testing.T, dest Destination, key string) []byte {
	t.Helper()
	rc, err := dest.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

// TestExportToDirectory: an export of three months to a directory
// round-trips every entry byte for byte, with matching hashes; run again
// under its id, it stores nothing new.
func TestExportToDirectory(t *testing.T) {
	ctx := context.Background()
	conn := pgtest.Connect(t, newTrail(t))
	dest, err := Open(t.TempDir(), S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	req := Request{ID: "test-1", Filter: query.Days(120, time.Now()), Format: "jsonl"}
	res, err := Run(ctx, conn, `"audit"`, dest, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 270 || len(res.Shards) < 3 {
		t.Fatalf("%d entries in %d archives, want 270 in 3 or 4", res.Entries, len(res.Shards))
	}
	checkExport(t, conn, dest, req, res)
	again, err := Run(ctx, conn, `"audit"`, dest, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range again.Shards {
		if !sh.Resumed {
			t.Errorf("%s written again", sh.Key)
		}
	}
	// An entry come in since: its month's archive is written again, the
	// others kept.
	pgtest.Exec(t, conn.Config().ConnString(), `INSERT INTO audit.entries (id, commit_lsn, seq, committed_at, schema_name, table_name, action)
		VALUES (100000, '9/0', 1, now() - interval '1 minute', 'public', 'orders', 'insert')`)
	again, err = Run(ctx, conn, `"audit"`, dest, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	last := again.Shards[len(again.Shards)-1]
	if last.Resumed || !again.Shards[0].Resumed || last.Entries != res.Shards[len(res.Shards)-1].Entries+1 {
		t.Errorf("after a new entry: %+v", again.Shards)
	}
	checkExport(t, conn, dest, req, again)
	// Another filter under the same id is refused.
	other := req
	other.Filter.Tables = []string{"public.users"}
	if _, err := Run(ctx, conn, `"audit"`, dest, other, nil); err == nil || !strings.Contains(err.Error(), "another format or filter") {
		t.Errorf("another filter under the same id: %v", err)
	}

	// CSV too: the same entries, quoted against formulas.
	req = Request{ID: "test-csv", Filter: query.Days(120, time.Now()), Format: "csv"}
	res, err = Run(ctx, conn, `"audit"`, dest, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(read(t, dest, res.Shards[0].Key)), int64(len(read(t, dest, res.Shards[0].Key))))
	if err != nil || zr.File[0].Name != "entries.csv" {
		t.Fatalf("CSV archive: %v", err)
	}
}

// failing fails every upload after the first n.
type failing struct {
	Destination
	n int
}

func (f *failing) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if f.n == 0 {
		io.Copy(io.Discard, io.LimitReader(r, 1000))
		return 0, errors.New("the store went away")
	}
	f.n--
	return f.Destination.Put(ctx, key, r)
}

// TestExportToS3: an export to an S3 store that checks signatures
// round-trips every entry; a presigned link downloads an archive, and an
// expired one does not; an upload that fails fails the export, and a run
// again under its id completes it, keeping what was stored.
func TestExportToS3(t *testing.T) {
	ctx := context.Background()
	conn := pgtest.Connect(t, newTrail(t))
	cfg, _ := fakeS3(t)
	dest, err := Open("s3://audit/exports/walscribe", cfg)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{ID: "s3-1", Filter: query.Days(120, time.Now()), Format: "jsonl"}
	_, err = Run(ctx, conn, `"audit"`, &failing{Destination: dest, n: 1}, req, nil) // the first archive only
	if err == nil || !strings.Contains(err.Error(), "the store went away") {
		t.Fatalf("an upload failing: %v", err)
	}
	res, err := Run(ctx, conn, `"audit"`, dest, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Shards[0].Resumed || res.Shards[1].Resumed {
		t.Errorf("the run again: %+v; want the first archive kept, the others written", res.Shards)
	}
	checkExport(t, conn, dest, req, res)

	link, err := dest.URL(ctx, res.Shards[1].Key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, read(t, dest, res.Shards[1].Key)) {
		t.Errorf("the presigned link: %d, %d bytes", resp.StatusCode, len(body))
	}
	if unsigned := strings.Split(link, "?")[0]; httpStatus(t, unsigned) == 200 {
		t.Error("the archive downloads without a signature")
	}
	expired, err := dest.URL(ctx, res.Shards[1].Key, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if code := httpStatus(t, expired); code == 200 {
		t.Error("an expired link still downloads")
	}

	wrong := cfg
	wrong.SecretKey = "not-the-key"
	bad, err := Open("s3://audit/other", wrong)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, conn, `"audit"`, bad, Request{ID: "s3-2", Filter: req.Filter, Format: "jsonl"}, nil); err == nil {
		t.Error("an export with a wrong secret key succeeded")
	}
}

func httpStatus(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
