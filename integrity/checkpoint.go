package integrity

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A Checkpoint is a tree head: the log's origin, its size in leaves and its
// root hash (Tree.Root). Its text form is C2SP tlog-checkpoint
// (https://c2sp.org/tlog-checkpoint).
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// Errors that Open and ParseCheckpoint wrap, to tell why a checkpoint is
// refused; WrongKeyError is the other one.
var (
	// ErrMalformed: the note's text is not a checkpoint.
	ErrMalformed = errors.New("malformed checkpoint")
	// ErrNotSigned: the message is not a signed note.
	ErrNotSigned = errors.New("not a signed note")
	// ErrBadSignature: the verifier's key signed the note, but the
	// signature does not match its text: the text or the signature was
	// altered.
	ErrBadSignature = errors.New("bad signature")
	// ErrOriginMismatch: the origin line is not the verifier's key name.
	ErrOriginMismatch = errors.New("origin does not match the key name")
)

// WrongKeyError is returned by Open for a note that carries no signature
// by the verifier's key, only signatures by other keys.
type WrongKeyError struct {
	// Want is the verifier's key, as name+hash (8 hex digits).
	Want string
	// Found are the keys that signed the note, as name+hash.
	Found []string
}

func (e *WrongKeyError) Error() string {
	return fmt.Sprintf("open checkpoint: signed by %s, not by the verifier key %s: check that the verifier key is this log's",
		strings.Join(e.Found, ", "), e.Want)
}

// Format returns the checkpoint's text: the origin, the size in decimal and
// the root hash in base64, each on its own line.
func (c Checkpoint) Format() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ParseCheckpoint parses a checkpoint's text, as Format writes it. Extension
// lines after the three it reads are allowed and ignored; anything not in
// canonical form (a size with leading zeros or a sign, a hash that is not
// 32 bytes in padded standard base64, a missing final newline, an empty
// line) is an error wrapping ErrMalformed.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return Checkpoint{}, fmt.Errorf("%w: the text does not end with a newline", ErrMalformed)
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("%w: %d lines, want origin, tree size and root hash", ErrMalformed, len(lines))
	}
	for i, l := range lines {
		if l == "" {
			return Checkpoint{}, fmt.Errorf("%w: line %d is empty", ErrMalformed, i+1)
		}
	}
	c := Checkpoint{Origin: lines[0]}
	size := lines[1]
	var err error
	if c.Size, err = strconv.ParseInt(size, 10, 64); err != nil || size[0] == '+' || size[0] == '-' || size[0] == '0' && size != "0" {
		return Checkpoint{}, fmt.Errorf("%w: tree size %q is not a decimal number of leaves without sign or leading zeros", ErrMalformed, size)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return Checkpoint{}, fmt.Errorf("%w: root hash %q is not %d bytes in padded standard base64", ErrMalformed, lines[2], tlog.HashSize)
	}
	copy(c.Root[:], root)
	return c, nil
}

// Sign returns the checkpoint signed by s as a note. The checkpoint's
// origin must be the key's name, as C2SP tlog-checkpoint has it.
func Sign(c Checkpoint, s note.Signer) ([]byte, error) {
	if c.Origin != s.Name() {
		return nil, fmt.Errorf("sign checkpoint: origin %q is not the signer key's name %q; a log signs under its origin", c.Origin, s.Name())
	}
	if c.Size < 0 {
		return nil, fmt.Errorf("sign checkpoint: negative tree size %d", c.Size)
	}
	msg, err := note.Sign(&note.Note{Text: string(c.Format())}, s)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return msg, nil
}

// Open verifies that v's key signed the note msg and returns the checkpoint
// it holds. Signatures by other keys are ignored. The errors wrap
// ErrNotSigned, ErrBadSignature, ErrMalformed or ErrOriginMismatch, or are
// a *WrongKeyError.
func Open(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			e := &WrongKeyError{Want: keyID(v.Name(), v.KeyHash())}
			for _, s := range unverified.Note.UnverifiedSigs {
				e.Found = append(e.Found, keyID(s.Name, s.Hash))
			}
			return Checkpoint{}, e
		case errors.As(err, &invalid):
			return Checkpoint{}, fmt.Errorf("open checkpoint: %w by %s: the checkpoint's text or its signature was altered",
				ErrBadSignature, keyID(invalid.Name, invalid.Hash))
		default:
			return Checkpoint{}, fmt.Errorf("open checkpoint: %w (%v): want the checkpoint's lines, a blank line, and signature lines", ErrNotSigned, err)
		}
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("open checkpoint: %w", err)
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("open checkpoint: %w: origin %q, key name %q; C2SP tlog-checkpoint has a log sign under its origin, so this checkpoint is not this log's",
			ErrOriginMismatch, c.Origin, v.Name())
	}
	return c, nil
}

// keyID names a key as notes do: name+hash.
func keyID(name string, hash uint32) string {
	return fmt.Sprintf("%s+%08x", name, hash)
}
