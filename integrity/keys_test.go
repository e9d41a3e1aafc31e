package integrity

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateKey(t *testing.T) {
	skey, vkey, err := GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(skey, "PRIVATE+KEY+"+origin+"+") || !strings.HasPrefix(vkey, origin+"+") {
		t.Fatalf("keys %q, %q", skey, vkey)
	}
	// White space around a key, such as a file's final newline, is fine.
	s, err := ParseSigner(" " + skey + "\n")
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVerifier(vkey + "\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != origin || v.Name() != origin || s.KeyHash() != v.KeyHash() {
		t.Fatalf("signer %s+%08x, verifier %s+%08x", s.Name(), s.KeyHash(), v.Name(), v.KeyHash())
	}
	for _, name := range []string{"", "has space", "a+b", "tab\there", "\xff"} {
		if _, _, err := GenerateKey(name); err == nil || !strings.Contains(err.Error(), "key name") {
			t.Errorf("GenerateKey(%q): %v, want an error about the key name", name, err)
		}
	}
}

// TestParseKeys: keys that are not right are refused with a reason, and the
// reason never quotes a private key.
func TestParseKeys(t *testing.T) {
	skey, vkey, err := GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	secret := skey[strings.LastIndexByte(skey, '+')+1:]
	fields := strings.SplitN(vkey, "+", 3)
	name, hash, key := fields[0], fields[1], fields[2]
	raw, _ := base64.StdEncoding.DecodeString(key)
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	otherAlg := append([]byte{2}, raw[1:]...)
	otherHash := "0"
	if hash[0] == '0' {
		otherHash = "1"
	}
	otherHash += hash[1:]

	verifiers := []struct{ key, why string }{
		{skey, "signer key (private)"},
		{"", "three fields"},
		{name, "three fields"},
		{name + "+" + hash, "three fields"},
		{"other.example+" + hash + "+" + key, "does not match"},
		{name + "+" + otherHash + "+" + key, "does not match"},
		{name + "+" + hash[:7] + "+" + key, "8 hex digits"},
		{name + "+" + hash[:7] + "g+" + key, "8 hex digits"},
		{"bad name+" + hash + "+" + key, "key name"},
		{name + "+" + hash + "+" + key[:10] + "!", "base64"},
		{name + "+" + hash + "+" + b64(raw[:20]), "32 bytes"},
		{name + "+" + hash + "+" + b64(otherAlg), "algorithm 2"},
	}
	for _, c := range verifiers {
		if _, err := ParseVerifier(c.key); err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("ParseVerifier(%q): %v, want an error saying %q", c.key, err, c.why)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("ParseVerifier error quotes the private key: %v", err)
		}
	}

	sfields := strings.SplitN(skey, "+", 5)
	shash, skeyB64 := sfields[3], sfields[4]
	sraw, _ := base64.StdEncoding.DecodeString(skeyB64)
	signers := []struct{ key, why string }{
		{vkey, "verifier key (public)"},
		{"", "not a signer key"},
		{"PRIVATE+KEY+" + name, "three fields"},
		{"PRIVATE+KEY+other.example+" + shash + "+" + skeyB64, "does not match"},
		{"PRIVATE+KEY+" + name + "+" + shash[:6] + "+" + skeyB64, "8 hex digits"},
		{"PRIVATE+KEY+" + name + "+" + shash + "+" + skeyB64[:20] + "%", "base64"},
		{"PRIVATE+KEY+" + name + "+" + shash + "+" + b64(sraw[:31]), "32 bytes"},
		{"PRIVATE+KEY+" + name + "+" + shash + "+" + b64(append([]byte{9}, sraw[1:]...)), "algorithm 9"},
		{"private+key+" + strings.TrimPrefix(skey, "PRIVATE+KEY+"), "not a signer key"},
	}
	for _, c := range signers {
		if _, err := ParseSigner(c.key); err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("ParseSigner(…): %v, want an error saying %q", err, c.why)
		} else if strings.Contains(err.Error(), secret) || len(c.key) > 20 && strings.Contains(err.Error(), c.key[len(c.key)-20:]) {
			t.Errorf("ParseSigner error quotes the private key: %v", err)
		}
	}
}

func TestLoadSigner(t *testing.T) {
	skey, vkey, err := GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // WriteFile's mode passes through the umask
			t.Fatal(err)
		}
		return path
	}

	for _, mode := range []os.FileMode{0o600, 0o400} {
		s, err := LoadSigner(write("ok", skey+"\n", mode))
		if err != nil {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		if s.Name() != origin {
			t.Fatalf("loaded key %q", s.Name())
		}
		os.Remove(filepath.Join(dir, "ok"))
	}

	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o601} {
		path := write("open", skey, mode)
		_, err := LoadSigner(path)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: %v, want an error saying to run chmod 600 %s", mode, err, path)
		}
		os.Remove(path)
	}

	if _, err := LoadSigner(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
	path := write("public", vkey, 0o600)
	if _, err := LoadSigner(path); err == nil || !strings.Contains(err.Error(), "verifier key (public)") || !strings.Contains(err.Error(), path) {
		t.Errorf("a verifier key file: %v", err)
	}
}

// TestVerifierOf: the verifier derived from a signer key is the one
// GenerateKey gave with it, and checks what the signer signs.
func TestVerifierOf(t *testing.T) {
	skey, vkey, err := GenerateKey("example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := VerifierOf(s)
	if !ok {
		t.Fatal("no verifier for a parsed signer")
	}
	want, err := ParseVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name() != want.Name() || v.KeyHash() != want.KeyHash() {
		t.Fatalf("derived verifier %s+%08x, want %s+%08x", v.Name(), v.KeyHash(), want.Name(), want.KeyHash())
	}
	msg, err := Sign(Checkpoint{Origin: "example.com/log", Size: 3, Root: [32]byte{1}}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(msg, v); err != nil {
		t.Fatalf("the derived verifier refuses the signer's checkpoint: %v", err)
	}
}
