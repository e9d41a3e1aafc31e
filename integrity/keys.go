package integrity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// signerPrefix starts every signer key.
const signerPrefix = "PRIVATE+KEY+"

// GenerateKey returns a new Ed25519 key pair for signing checkpoints, in
// note's text form: the signer key (PRIVATE+KEY+name+hash+key), to keep
// secret and out of the database, and the verifier key (name+hash+key),
// to give to whoever verifies. The name is the log's origin.
func GenerateKey(name string) (signer, verifier string, err error) {
	if err := checkName(name); err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	signer, verifier, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	return signer, verifier, nil
}

// LoadSigner reads the signer key in the file at path. It refuses a file
// that the group or others may access (mode & 0o077 != 0).
func LoadSigner(path string) (note.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load signer key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load signer key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load signer key: %s is open to its group or to others (mode %04o), and the key must stay secret: run chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<10))
	if err != nil {
		return nil, fmt.Errorf("load signer key: %w", err)
	}
	s, err := parseSigner(string(b))
	if err != nil {
		return nil, fmt.Errorf("load signer key from %s: %w", path, err)
	}
	return s, nil
}

// ParseSigner parses a signer key given as text, such as in the
// environment. Surrounding white space is ignored.
func ParseSigner(text string) (note.Signer, error) {
	s, err := parseSigner(text)
	if err != nil {
		return nil, fmt.Errorf("parse signer key: %w", err)
	}
	return s, nil
}

// parseSigner parses a signer key; its errors never quote the key.
func parseSigner(text string) (note.Signer, error) {
	text = strings.TrimSpace(text)
	rest, ok := strings.CutPrefix(text, signerPrefix)
	if !ok {
		if _, err := note.NewVerifier(text); err == nil {
			return nil, errors.New("this is a verifier key (public); give the signer key, which starts with " + signerPrefix)
		}
		return nil, errors.New("not a signer key: want " + signerPrefix + "name+hash+key")
	}
	s, err := note.NewSigner(text)
	if err != nil {
		return nil, explainKey(rest)
	}
	v, err := verifierOf(text)
	if err != nil {
		return nil, explainKey(rest)
	}
	return &keyPair{Signer: s, verifier: v}, nil
}

// keyPair is a signer that also gives its verifier.
type keyPair struct {
	note.Signer
	verifier note.Verifier
}

// Verifier is the verifier of the signer's signatures.
func (k *keyPair) Verifier() note.Verifier { return k.verifier }

// VerifierOf returns the verifier of a signer LoadSigner or ParseSigner
// returned, so that the signer's holder can check checkpoints it signed.
func VerifierOf(s note.Signer) (note.Verifier, bool) {
	k, ok := s.(*keyPair)
	if !ok {
		return nil, false
	}
	return k.verifier, true
}

// verifierOf derives the verifier key from a signer key,
// PRIVATE+KEY+name+hash+base64(algorithm || Ed25519 seed).
func verifierOf(signerKey string) (note.Verifier, error) {
	parts := strings.SplitN(strings.TrimPrefix(signerKey, signerPrefix), "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("malformed signer key")
	}
	b, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != 1 {
		return nil, errors.New("not an Ed25519 signer key")
	}
	pub := ed25519.NewKeyFromSeed(b[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(parts[0], pub)
	if err != nil {
		return nil, err
	}
	return note.NewVerifier(vkey)
}

// ParseVerifier parses a verifier key (name+hash+key). Surrounding white
// space is ignored.
func ParseVerifier(text string) (note.Verifier, error) {
	text = strings.TrimSpace(text)
	if strings.HasPrefix(text, signerPrefix) {
		return nil, errors.New("parse verifier key: this is a signer key (private); give the verifier key (name+hash+key), and keep the signer key secret")
	}
	v, err := note.NewVerifier(text)
	if err != nil {
		return nil, fmt.Errorf("parse verifier key: %w", explainKey(text))
	}
	return v, nil
}

// explainKey says what is wrong with key, name+hash+key, which note
// refused. It quotes the name and the hash, never the key.
func explainKey(key string) error {
	name, rest, _ := strings.Cut(key, "+")
	hash, b64, ok := strings.Cut(rest, "+")
	if !ok {
		return errors.New("want name+hash+key, three fields separated by '+'")
	}
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := strconv.ParseUint(hash, 16, 32); err != nil || len(hash) != 8 {
		return fmt.Errorf("key hash %q is not 8 hex digits", hash)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	switch {
	case err != nil || len(b) == 0:
		return errors.New("the key is not in base64")
	case b[0] != 1:
		return fmt.Errorf("key algorithm %d is unknown; only Ed25519 (1) is", b[0])
	case len(b) != 1+32:
		return fmt.Errorf("an Ed25519 key is 32 bytes, this one %d", len(b)-1)
	}
	return fmt.Errorf("key hash %s does not match the name %q and the key: one of them was altered", hash, name)
}

// checkName checks a key name as note requires it.
func checkName(name string) error {
	if name == "" || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsSpace) >= 0 || strings.Contains(name, "+") {
		return fmt.Errorf("key name %q: want the log's origin, non-empty, without spaces or '+', such as example.com/audit", name)
	}
	return nil
}
