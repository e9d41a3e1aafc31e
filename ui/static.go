package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// The static files: the style sheet, and htmx 2.0.11 as npm publishes it
// (npm pack htmx.org@2.0.11, dist/htmx.min.js) with its licence (0BSD).
// htmx.min.js has SHA-256
// d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717 (a test
// checks it; static/README.md says how to update it).
//
//go:embed static
var staticFS embed.FS

// HTMXSHA256 is the SHA-256 of the vendored htmx.min.js.
const HTMXSHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"

// asset is a static file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// contentType is the type a static file is served as ("" for a file not
// served).
func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".LICENSE":
		return "text/plain; charset=utf-8"
	}
	return ""
}

// loadStatic reads the embedded static files.
func loadStatic() (map[string]asset, error) {
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		return nil, err
	}
	out := map[string]asset{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := fs.ReadFile(staticFS, "static/"+e.Name())
		if err != nil {
			return nil, err
		}
		ct := contentType(e.Name())
		if ct == "" {
			continue
		}
		sum := sha256.Sum256(b)
		out[e.Name()] = asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
	}
	return out, nil
}

// serveStatic serves a static file; browsers check it is current
// (ETag) each time they use it.
func (u *UI) serveStatic(w http.ResponseWriter, r *http.Request) {
	a, ok := u.static[r.PathValue("name")]
	if !ok {
		u.notFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
