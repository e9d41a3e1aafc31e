package config

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	// The expected values are the units' definitions: KB, MB, GB powers of
	// 1000, KiB, MiB, GiB powers of 1024.
	tests := []struct {
		in   string
		want ByteSize
		err  string // a substring of the error; "" for none
	}{
		{in: "8MiB", want: 8 * 1024 * 1024},
		{in: "8mib", want: 8 * 1024 * 1024},
		{in: "8MIB", want: 8 * 1024 * 1024},
		{in: "8 MiB", want: 8 * 1024 * 1024},
		{in: " 8MiB ", want: 8 * 1024 * 1024},
		{in: "512KiB", want: 512 * 1024},
		{in: "512 kib", want: 512 * 1024},
		{in: "1GiB", want: 1024 * 1024 * 1024},
		{in: "2KB", want: 2 * 1000},
		{in: "64MB", want: 64 * 1000 * 1000},
		{in: "64mb", want: 64 * 1000 * 1000},
		{in: "1GB", want: 1000 * 1000 * 1000},
		{in: "100B", want: 100},
		{in: "100 b", want: 100},
		{in: "1048576", want: 1048576},
		{in: "0", want: 0},
		{in: "+1KiB", want: 1024},
		{in: "-1KiB", want: -1024}, // parsed, so that Validate says it is out of range
		{in: "", err: `cannot use "": want a size such as 8MiB or 512KiB`},
		{in: "MiB", err: `cannot use "MiB"`},
		{in: "8.5MiB", err: `cannot use "8.5MiB": want a size`},
		{in: "8 M", err: `cannot use "8 M"`},
		{in: "8MiBs", err: `cannot use "8MiBs"`},
		{in: "8 MiB B", err: `cannot use "8 MiB B"`},
		{in: "8TiB", err: `cannot use "8TiB"`},
		{in: "eight", err: `cannot use "eight"`},
		{in: "1e6", err: `cannot use "1e6"`},
		{in: "0x100", err: `cannot use "0x100"`},
		{in: "8_000", err: `cannot use "8_000"`},
		{in: "- 8MiB", err: `cannot use "- 8MiB"`},
		{in: "99999999999999999999", err: `"99999999999999999999" is too large`},
		{in: "9007199254740992KiB", err: `"9007199254740992KiB" is too large`}, // 2^53 KiB = 2^63 bytes
		{in: "9007199254740991KiB", want: (1<<53 - 1) * 1024},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("ParseByteSize(%q): %v", tt.in, err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("ParseByteSize(%q) = %d, %v, want an error with %q", tt.in, got, err, tt.err)
			case tt.err == "" && got != tt.want:
				t.Errorf("ParseByteSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), "want a size such as 8MiB or 512KiB") {
				t.Errorf("ParseByteSize(%q): %v, want it to show a valid size", tt.in, err)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	// String writes the size in the largest unit that divides it, and
	// ParseByteSize reads back the same size.
	tests := []struct {
		size ByteSize
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1023, "1023B"},
		{1000, "1KB"},
		{1024, "1KiB"},
		{512 * 1024, "512KiB"},
		{64 * 1024, "64KiB"},
		{1536 * 1024, "1536KiB"},
		{8 * 1024 * 1024, "8MiB"},
		{64 * 1000 * 1000, "64MB"},
		{1000 * 1024 * 1024, "1000MiB"},
		{1024 * 1024 * 1024, "1GiB"},
		{3 * 1000 * 1000 * 1000, "3GB"},
		{-8 * 1024 * 1024, "-8MiB"},
		{1048577, "1048577B"},
		{math.MaxInt64, "9223372036854775807B"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.size.String(); got != tt.want {
				t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.size), got, tt.want)
			}
			back, err := ParseByteSize(tt.size.String())
			if err != nil || back != tt.size {
				t.Errorf("ParseByteSize(%q) = %d, %v, want %d", tt.size.String(), back, err, int64(tt.size))
			}
		})
	}
}

func TestSpoolAndSlotKeys(t *testing.T) {
	const valid = "source:\n  dsn: " + testDSN + "\ntables:\n  - name: public.orders\n"
	dir := t.TempDir() // a directory that exists and is writable
	file := filepath.Join(dir, "regular-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name      string
		yaml      string            // appended to valid
		env       map[string]string // set for the test
		txnMemory ByteSize          // what Load gives when want is nil
		dir       string
		recreate  bool
		want      []string // substrings of the error; nil for none
	}{
		// Defaults and values that load.
		{name: "defaults", txnMemory: 8 * MiB},
		{name: "size with a binary unit", yaml: "spool:\n  txn_memory: 16MiB\n", txnMemory: 16 * 1024 * 1024},
		{name: "size with a space", yaml: "spool:\n  txn_memory: 512 KiB\n", txnMemory: 512 * 1024},
		{name: "size in lowercase", yaml: "spool:\n  txn_memory: 64mb\n", txnMemory: 64 * 1000 * 1000},
		{name: "size as a YAML number", yaml: "spool:\n  txn_memory: 1048576\n", txnMemory: 1048576},
		{name: "size as a quoted number", yaml: "spool:\n  txn_memory: \"1048576\"\n", txnMemory: 1048576},
		{name: "size as a whole float", yaml: "spool:\n  txn_memory: 1e6\n", txnMemory: 1000000},
		{name: "smallest size", yaml: "spool:\n  txn_memory: 65536\n", txnMemory: 64 * 1024},
		{name: "largest size", yaml: "spool:\n  txn_memory: 1GiB\n", txnMemory: 1024 * 1024 * 1024},
		{name: "size from the environment out of range", yaml: "spool:\n  txn_memory: 16MiB\n", env: map[string]string{"WALSCRIBE_SPOOL_TXN_MEMORY": "2 gb"}, want: []string{"spool.txn_memory: 2GB is out of range"}},
		{name: "size from the environment in range", yaml: "spool:\n  txn_memory: 16MiB\n", env: map[string]string{"WALSCRIBE_SPOOL_TXN_MEMORY": "128kb"}, txnMemory: 128 * 1000},
		{name: "dir that exists", yaml: "spool:\n  dir: " + dir + "\n", txnMemory: 8 * MiB, dir: dir},
		{name: "dir from the environment", env: map[string]string{"WALSCRIBE_SPOOL_DIR": dir}, txnMemory: 8 * MiB, dir: dir},
		{name: "dir emptied by the environment", yaml: "spool:\n  dir: " + missing + "\n", env: map[string]string{"WALSCRIBE_SPOOL_DIR": ""}, txnMemory: 8 * MiB},
		{name: "recreate_lost_slot", yaml: "source:\n  recreate_lost_slot: true\n", txnMemory: 8 * MiB, recreate: true},
		{name: "recreate_lost_slot from the environment", env: map[string]string{"WALSCRIBE_SOURCE_RECREATE_LOST_SLOT": "true"}, txnMemory: 8 * MiB, recreate: true},

		// Sizes out of range.
		{name: "size below range", yaml: "spool:\n  txn_memory: 32KiB\n", want: []string{"spool.txn_memory: 32KiB is out of range: use a size from 64KiB to 1GiB, e.g. 8MiB"}},
		{name: "size one byte below range", yaml: "spool:\n  txn_memory: 65535\n", want: []string{"spool.txn_memory: 65535B is out of range"}},
		{name: "size one byte above range", yaml: "spool:\n  txn_memory: 1073741825\n", want: []string{"spool.txn_memory: 1073741825B is out of range"}},
		{name: "size above range", yaml: "spool:\n  txn_memory: 2GiB\n", want: []string{"spool.txn_memory: 2GiB is out of range", "from 64KiB to 1GiB"}},
		{name: "size zero", yaml: "spool:\n  txn_memory: 0\n", want: []string{"spool.txn_memory: 0B is out of range"}},
		{name: "size negative", yaml: "spool:\n  txn_memory: -1MiB\n", want: []string{"spool.txn_memory: -1MiB is out of range"}},
		{name: "size too large for any range", yaml: "spool:\n  txn_memory: 99999999999GiB\n", want: []string{"spool.txn_memory: \"99999999999GiB\" is too large"}},

		// Sizes that are not sizes.
		{name: "size with a fraction", yaml: "spool:\n  txn_memory: 1.5MiB\n", want: []string{"spool.txn_memory: cannot use \"1.5MiB\": want a size such as 8MiB or 512KiB"}},
		{name: "size as a float with a fraction", yaml: "spool:\n  txn_memory: 1048576.5\n", want: []string{"spool.txn_memory: cannot use 1048576.5: want a size such as 8MiB or 512KiB"}},
		{name: "size with an unknown unit", yaml: "spool:\n  txn_memory: 8M\n", want: []string{"spool.txn_memory: cannot use \"8M\": want a size such as 8MiB or 512KiB"}},
		{name: "size in words", yaml: "spool:\n  txn_memory: lots\n", want: []string{"spool.txn_memory: cannot use \"lots\""}},
		{name: "size true", yaml: "spool:\n  txn_memory: true\n", want: []string{"spool.txn_memory: cannot use true: want a size"}},
		{name: "size a list", yaml: "spool:\n  txn_memory: [8MiB]\n", want: []string{"spool.txn_memory: cannot use a list: want a size"}},
		{name: "size in words from the environment", env: map[string]string{"WALSCRIBE_SPOOL_TXN_MEMORY": "big"}, want: []string{"spool.txn_memory: cannot use \"big\": want a size"}},

		// Directories that cannot hold the spool.
		{name: "dir missing", yaml: "spool:\n  dir: " + missing + "\n", want: []string{"spool.dir: \"" + missing + "\" does not exist", "create it (mkdir -p " + missing + ")", "point spool.dir at a directory", "WALSCRIBE_SPOOL_DIR="}},
		{name: "dir missing from the environment", env: map[string]string{"WALSCRIBE_SPOOL_DIR": missing}, want: []string{"spool.dir: \"" + missing + "\" does not exist"}},
		{name: "dir is a file", yaml: "spool:\n  dir: " + file + "\n", want: []string{"spool.dir: \"" + file + "\" is not a directory", "point spool.dir at a directory", "system's temporary directory"}},
		{name: "dir below a file", yaml: "spool:\n  dir: " + file + "/spool\n", want: []string{"spool.dir: cannot use \"" + file + "/spool\" (not a directory)"}},

		// recreate_lost_slot that is not true or false.
		{name: "recreate_lost_slot a number", yaml: "source:\n  recreate_lost_slot: 1\n", want: []string{"source.recreate_lost_slot: cannot use 1: want true or false"}},
		{name: "recreate_lost_slot from the environment in words", env: map[string]string{"WALSCRIBE_SOURCE_RECREATE_LOST_SLOT": "yes"}, want: []string{"source.recreate_lost_slot: cannot use \"yes\": want true or false"}},

		// Problems in both keys are reported together.
		{name: "both spool keys", yaml: "spool:\n  dir: " + missing + "\n  txn_memory: 1KiB\n", want: []string{"2 problems:", "spool.dir: ", "spool.txn_memory: 1KiB is out of range"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			setEnv(t, tt.env)
			yaml := valid
			if strings.HasPrefix(tt.yaml, "source:\n") {
				// Merge into the source section rather than repeat it.
				yaml = strings.Replace(valid, "source:\n", tt.yaml, 1)
			} else {
				yaml += tt.yaml
			}
			cfg, err := Load(writeConfig(t, yaml))
			if tt.want != nil {
				if err == nil {
					t.Fatalf("Load succeeded with spool %+v, want an error", cfg.Spool)
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Spool.TxnMemory != tt.txnMemory {
				t.Errorf("spool.txn_memory = %s (%d), want %d", cfg.Spool.TxnMemory, int64(cfg.Spool.TxnMemory), int64(tt.txnMemory))
			}
			if cfg.Spool.Dir != tt.dir {
				t.Errorf("spool.dir = %q, want %q", cfg.Spool.Dir, tt.dir)
			}
			if cfg.Source.RecreateLostSlot != tt.recreate {
				t.Errorf("source.recreate_lost_slot = %v, want %v", cfg.Source.RecreateLostSlot, tt.recreate)
			}
		})
	}

	t.Run("the writability check leaves nothing behind", func(t *testing.T) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "regular-file" {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("spool.dir holds %q after Load, want only the test's regular-file", names)
		}
	})
}

func TestSpoolDirNotWritable(t *testing.T) {
	tests := []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"procfs", func(t *testing.T) string {
			// No user, root included, can create a file at the top of
			// procfs.
			if runtime.GOOS != "linux" {
				t.Skip("procfs is Linux's")
			}
			return "/proc"
		}},
		{"no write permission", func(t *testing.T) string {
			if os.Geteuid() == 0 {
				t.Skip("root may write whatever the permissions say")
			}
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o700) })
			return dir
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			c := Default()
			c.Source.DSN = testDSN
			c.Tables = []Table{{Name: "public.orders"}}
			c.Spool.Dir = dir
			err := c.Validate()
			want := "spool.dir: cannot create files in \"" + dir + "\""
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "change spool.dir") {
				t.Errorf("Validate with spool.dir %s: %v, want %q and how to fix it", dir, err, want)
			}
		})
	}
}
