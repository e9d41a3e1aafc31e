package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/walscribe/walscribe/config"
)

func newKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new random masking key (32 bytes in hex) for WALSCRIBE_MASKING_SECRET",
		Long: `keygen prints a new masking key: 32 bytes from the operating system's secure
random source, as 64 hex digits. Put it in WALSCRIBE_MASKING_SECRET (or
masking.secret in the configuration file, which then has to be kept private):

  export WALSCRIBE_MASKING_SECRET=$(walscribe keygen)

walscribe keys the HMAC-SHA256 of the columns masked with style hash with it, and
records only its key id in the audit schema's rules table. Keep the key for as long
as you compare masked values: under another key the same value hashes differently.
keygen reads no configuration and connects to nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := newMaskingKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), key)
			return nil
		},
	}
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
