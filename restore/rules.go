package restore

import (
	"encoding/json"
	"fmt"

	"github.com/walscribe/walscribe/rules"
)

// tableRules is what the rules in force when an entry was written said of
// its table, merged over every record read (one per slot): a column masked
// or left out by any of them counts as such.
type tableRules struct {
	masked   map[string]rules.Style
	excluded map[string]bool
	diff     bool // diff: changes
}

// describedRules is the JSON of rules.Set.Describe.
type describedRules struct {
	Tables []struct {
		Name    string            `json:"name"`
		Exclude []string          `json:"exclude"`
		Mask    map[string]string `json:"mask"`
		Diff    string            `json:"diff"`
	} `json:"tables"`
	ExcludeTables []string `json:"exclude_tables"`
}

// placeholderSecret stands for the masking key, which the record keeps
// only as a key id: rules.New wants one for hash masks, and nothing here
// hashes.
var placeholderSecret = []byte("restore: nothing is hashed with this")

// rulesFor compiles each record and merges what they say of schema.table,
// with the matching the decoder used (rules.Set.For).
func rulesFor(recs []RulesRecord, schema, table string) (tableRules, error) {
	tr := tableRules{masked: map[string]rules.Style{}, excluded: map[string]bool{}}
	for _, rec := range recs {
		var d describedRules
		if err := json.Unmarshal(rec.Rules, &d); err != nil {
			return tr, fmt.Errorf("rules of slot %s from %s: %w", rec.Slot, rec.From, err)
		}
		cfg := rules.Config{ExcludeTables: d.ExcludeTables, Secret: placeholderSecret}
		for _, t := range d.Tables {
			tc := rules.TableConfig{Name: t.Name, Exclude: t.Exclude, Mask: map[string]rules.Style{}}
			for col, s := range t.Mask {
				st, err := rules.ParseStyle(s)
				if err != nil {
					return tr, fmt.Errorf("rules of slot %s from %s: %s.mask.%s: %w", rec.Slot, rec.From, t.Name, col, err)
				}
				tc.Mask[col] = st
			}
			if t.Diff == "changes" {
				tc.Diff = rules.Changes
			}
			cfg.Tables = append(cfg.Tables, tc)
		}
		set, err := rules.New(cfg)
		if err != nil {
			return tr, fmt.Errorf("rules of slot %s from %s: %w", rec.Slot, rec.From, err)
		}
		t, ok := set.For(schema, table)
		if !ok {
			continue // not audited under these rules: they wrote none of its entries
		}
		for col, st := range t.Mask {
			if st != rules.None {
				tr.masked[col] = st
			}
		}
		for col := range t.Exclude {
			tr.excluded[col] = true
		}
		tr.diff = tr.diff || t.Diff == rules.Changes
	}
	return tr, nil
}
