package main

import (
	"cmp"
	"fmt"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/rules"
)

// rulesFromConfig compiles the per-table rules of a configuration.
func rulesFromConfig(c *config.Config) (*rules.Set, error) {
	rc := rules.Config{
		ExcludeTables:        c.ExcludeTables,
		Secret:               c.Masking.Key(),
		SkipUnchangedUpdates: c.SkipUnchangedUpdates,
		DefaultRetention:     c.Retention.Default,
	}
	for i, t := range c.Tables {
		tc := rules.TableConfig{
			Name:                 t.Name,
			Exclude:              t.Exclude,
			Mask:                 map[string]rules.Style{},
			Retention:            cmp.Or(t.Retention, c.Retention.Default),
			SkipUnchangedUpdates: c.SkipUnchangedUpdates,
		}
		if t.SkipUnchangedUpdates != nil {
			tc.SkipUnchangedUpdates = *t.SkipUnchangedUpdates
		}
		for _, col := range t.Mask {
			st, err := rules.ParseStyle(t.MaskStyle.StyleOf(col))
			if err != nil {
				return nil, fmt.Errorf("tables[%d].mask_style: %w", i, err)
			}
			tc.Mask[col] = st
		}
		if t.Diff == "changes" {
			tc.Diff = rules.Changes
		}
		var actions []audit.Action
		for _, a := range t.Actions {
			actions = append(actions, audit.Action(a))
		}
		set, err := rules.Actions(actions...)
		if err != nil {
			return nil, fmt.Errorf("tables[%d].actions: %w", i, err)
		}
		tc.Actions = set
		rc.Tables = append(rc.Tables, tc)
	}
	rs, err := rules.New(rc)
	if err != nil {
		return nil, fmt.Errorf("tables: %w", err)
	}
	return rs, nil
}
