package verify

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	"github.com/jackc/pglogrepl"

	"github.com/walscribe/walscribe/integrity"
)

// State is where a verification ended, saved so that the next one reads
// only the entries after it (--state): the tree of the entries verified, and
// the order position of the last one.
type State struct {
	Origin    string `json:"origin"`
	TreeSize  int64  `json:"tree_size"`
	Frontier  string `json:"frontier"` // base64 of integrity.Tree.Frontier
	CommitLSN string `json:"commit_lsn"`
	Seq       int64  `json:"seq"`
}

func (s *State) tree() (*integrity.Tree, error) {
	b, err := base64.StdEncoding.DecodeString(s.Frontier)
	if err != nil {
		return nil, fmt.Errorf("saved state: %w", err)
	}
	t, err := integrity.ParseFrontier(s.TreeSize, b)
	if err != nil {
		return nil, fmt.Errorf("saved state: %w", err)
	}
	return t, nil
}

func (s *State) lsn() pglogrepl.LSN {
	l, _ := pglogrepl.ParseLSN(s.CommitLSN)
	return l
}

// LoadState reads a saved state; a file that does not exist is no state.
func LoadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("saved state %s: %w", path, err)
	}
	if _, err := s.tree(); err != nil {
		return nil, fmt.Errorf("saved state %s: %w", path, err)
	}
	return &s, nil
}

// SaveState writes the state at the end of an intact run, up to the
// largest size a signed checkpoint vouched for.
func SaveState(path string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
