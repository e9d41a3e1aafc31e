package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/integrity"
)

func newKeygenCmd() *cobra.Command {
	var signerFile, name string
	cmd := &cobra.Command{
		Use:   "keygen [--signer FILE [--name NAME]]",
		Short: "Print a new masking key, or create the key pair that signs the integrity log",
		Long: `keygen prints a new masking key: 32 bytes from the operating system's secure
random source, as 64 hex digits. Put it in WALSCRIBE_MASKING_SECRET (or
masking.secret in the configuration file, which then has to be kept private):

  export WALSCRIBE_MASKING_SECRET=$(walscribe keygen)

walscribe keys the HMAC-SHA256 of the columns masked with style hash with it, and
records only its key id in the audit schema's rules table. Keep the key for as long
as you compare masked values: under another key the same value hashes differently.

With --signer FILE, keygen creates instead the Ed25519 key pair that signs the
checkpoints of the integrity log: the signer key in FILE (mode 0600; it must never
enter the database: set integrity.signer_key_file to FILE), and the verifier key in
FILE.pub, also printed, to give to auditors for walscribe verify. --name names the
log (the checkpoints' origin), e.g. example.com/billing-audit; by default
walscribe/<host name>. An existing file is never overwritten.

keygen reads no configuration and connects to nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if signerFile == "" {
				if name != "" {
					return errors.New("--name names a signing key: give --signer FILE too")
				}
				key, err := newMaskingKey()
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), key)
				return nil
			}
			if name == "" {
				host, err := os.Hostname()
				if err != nil || host == "" {
					host = "localhost"
				}
				name = "walscribe/" + host
			}
			signer, verifier, err := integrity.GenerateKey(name)
			if err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			if err := writeNew(signerFile, signer+"\n", 0o600); err != nil {
				return err
			}
			if err := writeNew(signerFile+".pub", verifier+"\n", 0o644); err != nil {
				os.Remove(signerFile)
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), verifier)
			fmt.Fprintf(cmd.ErrOrStderr(), "signer key: %s (keep it private: set integrity.signer_key_file to it)\nverifier key: %s.pub (above; give it to auditors: walscribe verify --key %s.pub)\n",
				signerFile, signerFile, signerFile)
			return nil
		},
	}
	cmd.Flags().StringVar(&signerFile, "signer", "", "create a signing key pair: the signer key in this file, the verifier key in FILE.pub")
	cmd.Flags().StringVar(&name, "name", "", "the log's name, the checkpoints' origin (with --signer; default walscribe/<host name>)")
	return cmd
}

// writeNew writes a file that must not exist yet, with mode perm.
func writeNew(path, content string, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("keygen: %w (an existing key is never overwritten)", err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("keygen: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keygen: %w", err)
	}
	return f.Close()
}

// newMaskingKey returns config.MinKeyBytes random bytes in hex, drawn again
// in the rare case (about once in 10^13) that they fail config's check for
// weak keys.
func newMaskingKey() (string, error) {
	for range 100 {
		b := make([]byte, config.MinKeyBytes)
		rand.Read(b) // never fails: crypto/rand crashes the program instead
		key := hex.EncodeToString(b)
		if _, err := config.DecodeMaskingKey(key); err == nil {
			return key, nil
		}
	}
	return "", errors.New("generate a masking key: 100 random keys in a row looked weak, so the system's random source is broken")
}
