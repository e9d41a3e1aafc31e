package integrity

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const origin = "example.com/audit"

// The C2SP example, with its root hash.
const exampleText = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

func TestFormatParse(t *testing.T) {
	c, err := ParseCheckpoint([]byte(exampleText))
	if err != nil {
		t.Fatal(err)
	}
	if c.Origin != "example.com/behind-the-sofa" || c.Size != 20852163 || c.Root.String() != "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=" {
		t.Fatalf("parsed %+v", c)
	}
	if got := string(c.Format()); got != exampleText {
		t.Fatalf("Format = %q, want %q", got, exampleText)
	}
	empty := Checkpoint{Origin: origin, Root: sha256.Sum256(nil)}
	if got, want := string(empty.Format()), origin+"\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"; got != want {
		t.Fatalf("Format = %q, want %q", got, want)
	}
	if back, err := ParseCheckpoint(empty.Format()); err != nil || back != empty {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	// Extension lines are ignored.
	if c2, err := ParseCheckpoint([]byte(exampleText + "ext one\nanother\n")); err != nil || c2 != c {
		t.Fatalf("with extension lines: %+v, %v", c2, err)
	}
}

func TestParseCheckpointMalformed(t *testing.T) {
	const root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
	for _, text := range []string{
		"",
		"\n",
		"o\n1\n" + root,                          // no final newline
		"o\n1\n",                                 // no root
		"\n1\n" + root + "\n",                    // empty origin
		"o\n\n" + root + "\n",                    // empty size
		"o\n01\n" + root + "\n",                  // leading zero
		"o\n00\n" + root + "\n",                  // leading zero
		"o\n+1\n" + root + "\n",                  // sign
		"o\n-1\n" + root + "\n",                  // negative
		"o\n-0\n" + root + "\n",                  // negative zero
		"o\n 1\n" + root + "\n",                  // space
		"o\n1 \n" + root + "\n",                  // space
		"o\n1_0\n" + root + "\n",                 // underscore
		"o\n0x10\n" + root + "\n",                // hex
		"o\n1e3\n" + root + "\n",                 // exponent
		"o\n9223372036854775808\n" + root + "\n", // past int64
		"o\n1\n" + root[:43] + "\n",              // unpadded
		"o\n1\n" + root[:40] + "====\n",          // short
		"o\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n", // URL alphabet
		"o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n", // non-canonical last bits
		"o\n1\n" + root + "\r\n",                               // CR
		"o\n1\n" + strings.Repeat("A", 48) + "\n",              // 36 bytes
		"o\n1\n" + root + "\n\n",                               // empty extension line
		"o\n1\n" + root + "\next\n\n",                          // empty extension line
		"o\r\n1\r\n" + root + "\r\n",                           // CRLF
	} {
		if c, err := ParseCheckpoint([]byte(text)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseCheckpoint(%q) = %+v, %v; want ErrMalformed", text, c, err)
		}
	}
}

// keys returns a new key pair named name.
func keys(t *testing.T, name string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func TestSignOpen(t *testing.T) {
	s, v := keys(t, origin)
	c := Checkpoint{Origin: origin, Size: 12345, Root: tlog.RecordHash([]byte("x"))}
	msg, err := Sign(c, s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(msg, append(c.Format(), "\n— "+origin+" "...)) {
		t.Fatalf("signed note:\n%s", msg)
	}
	if got, err := Open(msg, v); err != nil || got != c {
		t.Fatalf("Open = %+v, %v", got, err)
	}

	// Cosigned by another key: still opens.
	other, otherV := keys(t, "witness.example.com")
	cosigned, err := note.Sign(&note.Note{Text: string(c.Format())}, other, s)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Open(cosigned, v); err != nil || got != c {
		t.Fatalf("Open cosigned = %+v, %v", got, err)
	}

	t.Run("wrong key", func(t *testing.T) {
		// Another log's key, and a key of the same name but another key.
		_, sameName := keys(t, origin)
		for _, wrong := range []note.Verifier{otherV, sameName} {
			_, err := Open(msg, wrong)
			var wk *WrongKeyError
			if !errors.As(err, &wk) {
				t.Fatalf("Open with another key: %v, want a WrongKeyError", err)
			}
			found, want := keyID(s.Name(), s.KeyHash()), keyID(wrong.Name(), wrong.KeyHash())
			if wk.Want != want || len(wk.Found) != 1 || wk.Found[0] != found ||
				!strings.Contains(err.Error(), found) || !strings.Contains(err.Error(), want) {
				t.Errorf("error %q (%+v), want it to name %s and %s", err, wk, found, want)
			}
		}
	})

	t.Run("tampered", func(t *testing.T) {
		body := bytes.Replace(msg, []byte("\n12345\n"), []byte("\n12346\n"), 1)
		if _, err := Open(body, v); !errors.Is(err, ErrBadSignature) {
			t.Errorf("tampered size: %v, want ErrBadSignature", err)
		}
		// A character of the signature itself, past the key hash.
		sig := bytes.Clone(msg)
		i := bytes.LastIndexByte(sig, ' ') + 20
		if sig[i] == 'A' {
			sig[i] = 'B'
		} else {
			sig[i] = 'A'
		}
		if _, err := Open(sig, v); !errors.Is(err, ErrBadSignature) {
			t.Errorf("tampered signature: %v, want ErrBadSignature", err)
		}
	})

	t.Run("not signed", func(t *testing.T) {
		for _, m := range [][]byte{c.Format(), nil, []byte("hello\n\n"), []byte("x\n\n— " + origin + " !!!\n"), bytes.TrimSuffix(msg, []byte("\n"))} {
			if _, err := Open(m, v); !errors.Is(err, ErrNotSigned) {
				t.Errorf("Open(%q): %v, want ErrNotSigned", m, err)
			}
		}
	})

	t.Run("origin", func(t *testing.T) {
		other := c
		other.Origin = "example.com/other"
		if _, err := Sign(other, s); err == nil {
			t.Error("Sign with an origin that is not the key name succeeds")
		}
		m, err := note.Sign(&note.Note{Text: string(other.Format())}, s)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Open(m, v)
		if !errors.Is(err, ErrOriginMismatch) || !strings.Contains(err.Error(), `"example.com/other"`) {
			t.Errorf("Open with another origin: %v, want ErrOriginMismatch naming it", err)
		}
	})

	t.Run("malformed body", func(t *testing.T) {
		m, err := note.Sign(&note.Note{Text: origin + "\n012\n" + c.Root.String() + "\n"}, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(m, v); !errors.Is(err, ErrMalformed) {
			t.Errorf("Open of a signed malformed body: %v, want ErrMalformed", err)
		}
		if _, err := Sign(Checkpoint{Origin: origin, Size: -1}, s); err == nil {
			t.Error("Sign with a negative size succeeds")
		}
	})
}
