package export

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// A Destination stores exported archives under keys (slash-separated
// names), each with a sidecar key.sha256 holding its SHA-256 in the form
// sha256sum writes: an archive whose sidecar is there is stored whole.
type Destination interface {
	// Stored returns the SHA-256 (hex) and size of the archive stored at
	// key, and whether it is stored whole.
	Stored(ctx context.Context, key string) (sha string, size int64, ok bool, err error)
	// Put stores what r gives at key, and returns its size.
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	// PutHash stores the sidecar of key: its SHA-256, hex.
	PutHash(ctx context.Context, key, sha string) error
	// URL returns a link to download key, valid for expires where the
	// store signs links (S3), or the file's URL (a directory).
	URL(ctx context.Context, key string, expires time.Duration) (string, error)
	// Get reads key.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// ReadAt opens key for reading at offsets (a ZIP archive's directory
	// is at its end), with its size.
	ReadAt(ctx context.Context, key string) (io.ReaderAt, int64, io.Closer, error)
	fmt.Stringer
}

// S3Config is how to reach an S3-compatible store.
type S3Config struct {
	Endpoint             string // host[:port]
	Region               string
	AccessKey, SecretKey string // "": AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
	Insecure             bool   // plain HTTP
	PartSize             uint64 // of multipart uploads
}

// Open returns the destination to: a directory (made absolute; created
// when something is stored), or s3://bucket/prefix.
func Open(to string, s3 S3Config) (Destination, error) {
	if to == "" {
		return nil, errors.New("no destination: give --to DIR or --to s3://bucket/prefix (or set export.to)")
	}
	if !strings.HasPrefix(to, "s3://") {
		abs, err := filepath.Abs(to)
		if err != nil {
			return nil, fmt.Errorf("export to %s: %w", to, err)
		}
		return dir(abs), nil
	}
	u, err := url.Parse(to)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("export to %q: write s3://bucket/prefix", to)
	}
	if u.User != nil {
		// It would be stored in the export history and the trail.
		return nil, errors.New("export to S3: the destination holds credentials: write s3://bucket/prefix, and give the keys in export.s3 or the environment")
	}
	id, secret := s3.AccessKey, s3.SecretKey
	if id == "" {
		id = os.Getenv("AWS_ACCESS_KEY_ID")
	}
	if secret == "" {
		secret = os.Getenv("AWS_SECRET_ACCESS_KEY")
	}
	if id == "" || secret == "" {
		return nil, errors.New("export to S3: no credentials: set export.s3.access_key and export.s3.secret_key (best as WALSCRIBE_EXPORT_S3_ACCESS_KEY and WALSCRIBE_EXPORT_S3_SECRET_KEY), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	client, err := minio.New(s3.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(id, secret, ""), Secure: !s3.Insecure, Region: s3.Region})
	if err != nil {
		return nil, fmt.Errorf("export to %s: %w", to, err)
	}
	return &bucket{client: client, name: u.Host, prefix: strings.Trim(u.Path, "/"), partSize: s3.PartSize, to: to}, nil
}

// sidecar is the text of a key's hash sidecar.
func sidecar(key, sha string) []byte { return []byte(sha + "  " + path.Base(key) + "\n") }

// parseSidecar reads a sidecar's hash.
func parseSidecar(b []byte) (string, bool) {
	sha, _, _ := strings.Cut(string(b), " ")
	if raw, err := hex.DecodeString(sha); err != nil || len(raw) != 32 {
		return "", false
	}
	return sha, true
}

// dir is a directory.
type dir string

func (d dir) String() string { return string(d) }

func (d dir) path(key string) string { return filepath.Join(string(d), filepath.FromSlash(key)) }

func (d dir) Stored(ctx context.Context, key string) (string, int64, bool, error) {
	b, err := os.ReadFile(d.path(key) + ".sha256")
	if errors.Is(err, os.ErrNotExist) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, err
	}
	st, err := os.Stat(d.path(key))
	if err != nil {
		return "", 0, false, nil
	}
	sha, ok := parseSidecar(b)
	return sha, st.Size(), ok, nil
}

func (d dir) ReadAt(ctx context.Context, key string) (io.ReaderAt, int64, io.Closer, error) {
	f, err := os.Open(d.path(key))
	if err != nil {
		return nil, 0, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	return f, st.Size(), f, nil
}

// write writes key atomically: a temporary file synced, then renamed.
func (d dir) write(key string, r io.Reader) (int64, error) {
	p := d.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+"-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	return n, err
}

func (d dir) Put(ctx context.Context, key string, r io.Reader) (int64, error) { return d.write(key, r) }

func (d dir) PutHash(ctx context.Context, key, sha string) error {
	_, err := d.write(key+".sha256", bytes.NewReader(sidecar(key, sha)))
	return err
}

func (d dir) URL(ctx context.Context, key string, expires time.Duration) (string, error) {
	abs, err := filepath.Abs(d.path(key))
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "file", Path: abs}).String(), nil
}

func (d dir) Get(ctx context.Context, key string) (io.ReadCloser, error) { return os.Open(d.path(key)) }

// bucket is a prefix in an S3 bucket.
type bucket struct {
	client       *minio.Client
	name, prefix string
	partSize     uint64
	to           string
}

func (b *bucket) String() string { return b.to }

func (b *bucket) object(key string) string {
	if b.prefix == "" {
		return key
	}
	return b.prefix + "/" + key
}

// absent reports whether an error of reading an object says it is not
// there: NoSuchKey, or AccessDenied, which stores give for a missing key
// to credentials that may not list the bucket.
func absent(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "AccessDenied"
}

func (b *bucket) Stored(ctx context.Context, key string) (string, int64, bool, error) {
	obj, err := b.client.GetObject(ctx, b.name, b.object(key)+".sha256", minio.GetObjectOptions{})
	if err != nil {
		return "", 0, false, fmt.Errorf("read %s: %w", b.object(key)+".sha256", err)
	}
	defer obj.Close()
	text, err := io.ReadAll(io.LimitReader(obj, 1024))
	if err != nil {
		if absent(err) {
			return "", 0, false, nil
		}
		return "", 0, false, fmt.Errorf("read %s: %w", b.object(key)+".sha256", err)
	}
	info, err := b.client.StatObject(ctx, b.name, b.object(key), minio.StatObjectOptions{})
	if err != nil {
		if absent(err) {
			return "", 0, false, nil
		}
		return "", 0, false, fmt.Errorf("stat %s: %w", b.object(key), err)
	}
	sha, ok := parseSidecar(text)
	return sha, info.Size, ok, nil
}

func (b *bucket) ReadAt(ctx context.Context, key string) (io.ReaderAt, int64, io.Closer, error) {
	obj, err := b.client.GetObject(ctx, b.name, b.object(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, nil, err
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, 0, nil, err
	}
	return obj, info.Size, obj, nil
}

func (b *bucket) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	info, err := b.client.PutObject(ctx, b.name, b.object(key), r, -1,
		minio.PutObjectOptions{PartSize: b.partSize, ContentType: contentType(key)})
	if err != nil {
		return 0, fmt.Errorf("upload %s to bucket %s: %w", b.object(key), b.name, err)
	}
	return info.Size, nil
}

func (b *bucket) PutHash(ctx context.Context, key, sha string) error {
	text := sidecar(key, sha)
	_, err := b.client.PutObject(ctx, b.name, b.object(key)+".sha256", bytes.NewReader(text), int64(len(text)),
		minio.PutObjectOptions{ContentType: "text/plain"})
	if err != nil {
		return fmt.Errorf("upload %s.sha256 to bucket %s: %w", b.object(key), b.name, err)
	}
	return nil
}

func (b *bucket) URL(ctx context.Context, key string, expires time.Duration) (string, error) {
	u, err := b.client.PresignedGetObject(ctx, b.name, b.object(key), expires, nil)
	if err != nil {
		return "", fmt.Errorf("sign a link to %s: %w", b.object(key), err)
	}
	return u.String(), nil
}

func (b *bucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return b.client.GetObject(ctx, b.name, b.object(key), minio.GetObjectOptions{})
}

func contentType(key string) string {
	switch path.Ext(key) {
	case ".zip":
		return "application/zip"
	case ".json":
		return "application/json"
	}
	return "application/octet-stream"
}
