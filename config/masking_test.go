package config

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// seq returns the bytes from, from+1, ... n of them, repeated to fill size.
func seq(from byte, n, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = from + byte(i%n)
	}
	return b
}

func TestDecodeMaskingKey(t *testing.T) {
	key := make([]byte, 32)
	if _, err := hex.Decode(key, []byte(testSecret)); err != nil {
		t.Fatal(err)
	}
	long := append(bytes.Clone(key), key[:16]...) // 48 bytes

	accepted := []struct {
		name   string
		secret string
		want   []byte
	}{
		{"hex", testSecret, key},
		{"hex in capitals", strings.ToUpper(testSecret), key},
		{"hex with a line break after it", testSecret + "\n", key},
		{"hex with spaces around it", "  " + testSecret + " ", key},
		{"base64", base64.StdEncoding.EncodeToString(key), key},
		{"base64 without padding", base64.RawStdEncoding.EncodeToString(key), key},
		{"URL-safe base64", base64.URLEncoding.EncodeToString(key), key},
		{"URL-safe base64 without padding", base64.RawURLEncoding.EncodeToString(key), key},
		{"48 bytes in base64", base64.StdEncoding.EncodeToString(long), long},
		{"hex with 0x", "0x" + testSecret, key},
		{"base64 broken over lines, as openssl prints it", base64.StdEncoding.EncodeToString(long)[:40] + "\n" + base64.StdEncoding.EncodeToString(long)[40:] + "\n", long},
		{"16 different byte values", hex.EncodeToString(seq(0x80, 16, 32)), seq(0x80, 16, 32)},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeMaskingKey(tt.secret)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("decoded to %x, want %x", got, tt.want)
			}
			if m := (Masking{Secret: tt.secret}); !bytes.Equal(m.Key(), tt.want) {
				t.Errorf("Key() = %x, want %x", m.Key(), tt.want)
			}
		})
	}

	refused := []struct {
		name   string
		secret string
		want   string
	}{
		{"empty", "", "not a key"},
		{"passphrase", "correct horse battery staple, and then some more words", "not a key"},
		{"sixteen a", "aaaaaaaaaaaaaaaa", "read as hex it is 8 bytes, too short"},
		{"short hex", "0123456789abcdef0123456789abcdef", "read as hex it is 16 bytes, too short"},
		{"odd hex", testSecret[:63], "63 hex digits is an odd number"},
		{"hex with a space inside", testSecret[:32] + " " + testSecret[32:], "not a key"},
		{"lower-case passphrase that is valid base64", "correcthorsebatterystapleandthensomemorewordss", "letters of one case only"},
		{"short base64", base64.StdEncoding.EncodeToString(key[:31]), "read as base64 it is 31 bytes, too short"},
		{"one byte repeated", strings.Repeat("a", 64), "its 32 bytes use only 1 of the 256 byte values"},
		{"zeros in base64", base64.StdEncoding.EncodeToString(make([]byte, 32)), "read as base64 its 32 bytes use only 1 of the 256 byte values"},
		{"two bytes alternating", strings.Repeat("ab01", 16), "use only 2 of the 256 byte values"},
		{"eight byte values", hex.EncodeToString(seq(0, 8, 32)), "use only 8 of the 256 byte values"},
		{"fifteen byte values", hex.EncodeToString(seq(0x80, 15, 32)), "use only 15 of the 256 byte values"},
		{"hex of a passphrase", hex.EncodeToString([]byte("our masking passphrase, 2024 edn")), "read as hex its 32 bytes are all printable text"},
		{"base64 of a passphrase", base64.StdEncoding.EncodeToString([]byte("our masking passphrase, 2024 edition\n")), "read as base64 its 37 bytes are all printable text"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeMaskingKey(tt.secret)
			if err == nil {
				t.Fatalf("accepted, as %x", got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			if m := (Masking{Secret: tt.secret}); m.Key() != nil {
				t.Errorf("Key() = %x for a refused secret, want nil", m.Key())
			}
			// Validate names the key and says how to make one, without
			// showing the secret.
			c := Default()
			c.Source.DSN = testDSN
			c.Tables = []Table{{Name: "public.users", Mask: []string{"email"}}}
			c.Masking.Secret = tt.secret
			verr := c.Validate()
			if verr == nil {
				t.Fatal("Validate accepted it")
			}
			msg := verr.Error()
			for _, w := range []string{"masking.secret: ", "walscribe keygen", "WALSCRIBE_MASKING_SECRET"} {
				if !strings.Contains(msg, w) {
					t.Errorf("Validate: %q lacks %q", msg, w)
				}
			}
			if s := strings.TrimSpace(tt.secret); len(s) >= 8 && strings.Contains(msg, s) {
				t.Errorf("Validate shows the secret: %s", msg)
			}
		})
	}
}

// TestRandomKeysPass: the checks for weak keys refuse no key of random
// bytes, as keygen and openssl rand make them.
func TestRandomKeysPass(t *testing.T) {
	b := make([]byte, MinKeyBytes)
	for range 10_000 {
		rand.Read(b)
		for _, s := range []string{hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b)} {
			if _, err := DecodeMaskingKey(s); err != nil {
				t.Fatalf("a random key %s was refused: %v", s, err)
			}
		}
	}
}
