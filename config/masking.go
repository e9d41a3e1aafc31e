package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MinKeyBytes is the least key material masking.secret must hold, in bytes
// after decoding: 32 (64 hex digits, or 43 base64 characters).
const MinKeyBytes = 32

// minKeyValues is the least number of distinct byte values a key must hold.
// 32 random bytes hold about 30; fewer than 16 happens less than once in 10^16
// keys, and always in keys such as 00000000… or abababab….
const minKeyValues = 16

// keyFix is what every message about a bad masking.secret ends with.
var keyFix = fmt.Sprintf("generate a key with `walscribe keygen` (or openssl rand -hex 32) and set %s (or masking.secret in the file) to it; values masked under the new key differ from those masked before, since equal values hash alike only under one key",
	envVar("masking.secret"))

// DecodeMaskingKey decodes masking.secret into the key of the HMAC-SHA256 of
// masked values. The secret is key material written as hex (only hex
// digits, either case, with or without a leading 0x) or else as base64
// (standard or URL-safe alphabet, padded or not); white space around it and
// line breaks in it are ignored (openssl rand -base64 64 breaks its lines).
// It is refused unless
// it decodes to at least MinKeyBytes bytes that look random: at least 16
// distinct byte values, and not all of them printable text (an encoded
// passphrase); base64 must mix upper and lower case letters, as random
// base64 does (a 43-letter passphrase in lower case is valid base64).
func DecodeMaskingKey(secret string) ([]byte, error) {
	s := strings.NewReplacer("\r", "", "\n", "").Replace(strings.TrimSpace(secret))
	if rest, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok && isHex(rest) {
		s = rest
	}
	form := "hex"
	var key []byte
	if isHex(s) {
		if len(s)%2 != 0 {
			return nil, fmt.Errorf("%d hex digits is an odd number: a key is whole bytes, two digits each", len(s))
		}
		key, _ = hex.DecodeString(s)
	} else {
		form = "base64"
		var ok bool
		if key, ok = decodeBase64(s); !ok {
			return nil, errors.New("not a key: want random bytes written as hex or base64, and a passphrase is neither")
		}
	}
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("read as %s it is %d bytes, too short: a key is at least %d random bytes (64 hex digits)", form, len(key), MinKeyBytes)
	}
	if n := distinctBytes(key); n < minKeyValues {
		return nil, fmt.Errorf("read as %s its %d bytes use only %d of the 256 byte values, which random bytes never do: it is not a random key", form, len(key), n)
	}
	if isText(key) {
		return nil, fmt.Errorf("read as %s its %d bytes are all printable text, which random bytes never are: it is an encoded passphrase, not a random key", form, len(key))
	}
	if form == "base64" && (!strings.ContainsAny(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") || !strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyz")) {
		return nil, errors.New("read as base64 it has letters of one case only, which random base64 never has: it is a passphrase, not a key")
	}
	return key, nil
}

// Key returns the decoded masking.secret (see DecodeMaskingKey), or nil
// when it is empty or not a valid key, which Load and Validate refuse.
func (m Masking) Key() []byte {
	key, err := DecodeMaskingKey(m.Secret)
	if err != nil {
		return nil
	}
	return key
}

// checkMaskingKey is the problem of a masking.secret that is set, "" when
// it is a valid key. The secret itself is left out of the message.
func checkMaskingKey(secret string) string {
	if _, err := DecodeMaskingKey(secret); err != nil {
		return err.Error() + ": " + keyFix
	}
	return ""
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// decodeBase64 decodes s in the first of the four base64 forms that reads
// it whole.
func decodeBase64(s string) ([]byte, bool) {
	if s == "" || strings.ContainsAny(s, "\r\n") { // the decoders would skip them
		return nil, false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}

func distinctBytes(b []byte) int {
	var seen [256]bool
	n := 0
	for _, c := range b {
		if !seen[c] {
			seen[c] = true
			n++
		}
	}
	return n
}

// isText reports whether every byte is printable ASCII, a tab or a line
// break. 32 random bytes are all text about once in 10^13 keys.
func isText(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}
