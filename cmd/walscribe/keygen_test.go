package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/internal/pgtest"
	"github.com/walscribe/walscribe/rules"
)

// keygen runs walscribe keygen and returns the key it printed.
func keygen(t *testing.T) string {
	t.Helper()
	out, code := walscribe(t, "keygen")
	if code != 0 {
		t.Fatalf("keygen: exit %d:\n%s", code, out)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(out) {
		t.Fatalf("keygen printed %q, want 64 hex digits on one line", out)
	}
	return strings.TrimSpace(out)
}

// TestKeygen: keygen prints a new valid masking key each time, and its
// help says where the key goes.
func TestKeygen(t *testing.T) {
	a, b := keygen(t), keygen(t)
	if a == b {
		t.Errorf("two runs printed the same key %s", a)
	}
	for _, k := range []string{a, b} {
		key, err := config.DecodeMaskingKey(k)
		if err != nil {
			t.Errorf("keygen's key is refused: %v", err)
		}
		if len(key) != 32 {
			t.Errorf("keygen's key is %d bytes, want 32", len(key))
		}
	}
	if out, code := walscribe(t, "keygen", "--help"); code != 0 || !strings.Contains(out, "WALSCRIBE_MASKING_SECRET") {
		t.Errorf("keygen --help: exit %d, lacks WALSCRIBE_MASKING_SECRET:\n%s", code, out)
	}
	if out, code := walscribe(t, "keygen", "extra"); code != 1 {
		t.Errorf("keygen with an argument: exit %d, want 1:\n%s", code, out)
	}
}

// TestMaskingKeyEndToEnd runs walscribe with a key from keygen: a hashed
// column is stored as the HMAC-SHA256 under the key's decoded bytes, and
// audit.rules holds the key only as its key id.
func TestMaskingKeyEndToEnd(t *testing.T) {
	dsn := srv.NewDB(t)
	pgtest.Exec(t, dsn, rulesSchema)
	secret := keygen(t)
	cfgText := regexp.MustCompile(`secret: "[0-9a-f]*"`).ReplaceAllString(rulesConfig(dsn), `secret: "`+secret+`"`)
	if !strings.Contains(cfgText, secret) {
		t.Fatal("rulesConfig has no masking secret to replace")
	}
	cfg := writeConfig(t, cfgText)
	setUp(t, cfg)
	startRun(t, cfg, nil)
	conn := pgtest.Connect(t, dsn)
	if _, err := conn.Exec(context.Background(), `INSERT INTO public.users (id, email, card) VALUES (1, 'ada@example.com', '4111 1111 1111 1111')`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the users entry", 30*time.Second, func() bool {
		return count(t, conn, `SELECT count(*) FROM audit.entries WHERE table_name = 'users'`) == 1
	})

	key, _ := hex.DecodeString(secret)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("4111 1111 1111 1111"))
	if n := count(t, conn, `SELECT count(*) FROM audit.entries WHERE table_name = 'users' AND new->>'card' = $1`,
		hex.EncodeToString(mac.Sum(nil))); n != 1 {
		t.Error("card is not stored as the HMAC-SHA256 under the decoded key")
	}
	if n := count(t, conn, `SELECT count(*) FROM audit.rules WHERE rules->>'masking_key_id' = $1`, rules.KeyID(key)); n != 1 {
		t.Errorf("audit.rules holds no record with key id %s", rules.KeyID(key))
	}
	if n := count(t, conn, `SELECT count(*) FROM audit.rules WHERE rules::text LIKE '%' || $1 || '%'`, secret[:16]); n != 0 {
		t.Error("audit.rules shows the secret")
	}
}
