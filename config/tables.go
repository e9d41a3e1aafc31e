package config

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// retentionPeriod is a retention such as 90d or 7y.
var retentionPeriod = regexp.MustCompile(`^[1-9][0-9]{0,4}[dwmy]$`)

// tableProblems checks exclude_tables, the tables entries and the masking
// secret they may need.
func (c *Config) tableProblems(check func(key, msg string)) {
	secretKey := "masking.secret"
	switch {
	case c.Masking.Secret == "" && c.HasHashMask():
		check(secretKey, fmt.Sprintf("required because %s: set %s (or masking.secret in the file) to a key of %d random bytes in hex, e.g. %s=$(walscribe keygen) or $(openssl rand -hex 32), or mask with mask_style: redact",
			c.firstHashMask(), envVar(secretKey), MinKeyBytes, envVar(secretKey)))
	case c.Masking.Secret != "":
		check(secretKey, checkMaskingKey(c.Masking.Secret))
	}

	seenExcluded := make(map[string]int, len(c.ExcludeTables))
	for i, name := range c.ExcludeTables {
		key := fmt.Sprintf("exclude_tables[%d]", i)
		if name == "" {
			check(key, "empty: write a table name or pattern such as public.sessions or *.tmp_*, or remove the entry")
			continue
		}
		if msg := checkTableName(name); msg != "" {
			check(key, msg)
			continue
		}
		qualified := qualify(name)
		if first, dup := seenExcluded[qualified]; dup {
			check(key, fmt.Sprintf("%s is listed twice (also exclude_tables[%d]): remove one of them", qualified, first))
			continue
		}
		seenExcluded[qualified] = i
	}

	if len(c.Tables) == 0 {
		check("tables", "no tables to audit: add at least one entry like `- name: public.orders` (or set "+tablesEnv+"=public.orders)")
	}
	seen := make(map[string]int, len(c.Tables)) // schema.table → index
	for i, t := range c.Tables {
		prefix := fmt.Sprintf("tables[%d]", i)
		if msg := checkTableName(t.Name); msg != "" {
			check(prefix+".name", msg)
		} else {
			qualified := qualify(t.Name)
			if first, dup := seen[qualified]; dup {
				check(prefix+".name", fmt.Sprintf("%s is listed twice (also tables[%d]): remove one of them, or merge their rules into one", qualified, first))
			} else {
				seen[qualified] = i
			}
		}
		t.problems(prefix, check)
	}
}

// firstHashMask says which entry needs the secret, for its message.
func (c *Config) firstHashMask() string {
	for i, t := range c.Tables {
		for _, col := range t.Mask {
			if t.MaskStyle.StyleOf(col) == StyleHash {
				return fmt.Sprintf("tables[%d].mask masks %s with style hash", i, col)
			}
		}
	}
	return "a column is masked with style hash"
}

// problems checks the rules of one tables entry; prefix is its key, as in
// tables[2].
func (t Table) problems(prefix string, check func(key, msg string)) {
	excluded := checkColumns(prefix+".exclude", t.Exclude, check)
	checkColumns(prefix+".mask", t.Mask, check)
	for j, col := range t.Mask {
		if col != "" && excluded[col] {
			check(fmt.Sprintf("%s.mask[%d]", prefix, j), fmt.Sprintf("%s is also in %s.exclude: an excluded column is never stored, so there is nothing to mask; remove it from one of the two lists", col, prefix))
		}
	}

	styles := []string{StyleHash, StyleRedact}
	if t.MaskStyle.Default != "" {
		check(prefix+".mask_style", checkChoice(t.MaskStyle.Default, styles))
	}
	for _, col := range sortedKeys(t.MaskStyle.PerColumn) {
		key := prefix + ".mask_style." + col
		if _, ok := maskedColumn(col, t.Mask); !ok {
			check(key, fmt.Sprintf("%s is not in %s.mask, so it is not masked: add it to mask, or remove it from mask_style", col, prefix))
			continue
		}
		check(key, checkChoice(t.MaskStyle.PerColumn[col], styles))
	}

	if t.Diff != "" {
		check(prefix+".diff", checkChoice(t.Diff, []string{DiffFull, DiffChanges}))
	}

	if t.Actions != nil && len(t.Actions) == 0 {
		check(prefix+".actions", "empty, so nothing would be recorded: list some of "+strings.Join(actions(), ", ")+", or leave the key out to record all four; to audit nothing of these tables, name them in exclude_tables")
	}
	seenAction := make(map[string]int, len(t.Actions))
	for j, a := range t.Actions {
		key := fmt.Sprintf("%s.actions[%d]", prefix, j)
		if msg := checkChoice(a, actions()); msg != "" {
			check(key, msg)
			continue
		}
		if first, dup := seenAction[a]; dup {
			check(key, fmt.Sprintf("%s is listed twice (also %s.actions[%d]): remove one of them", a, prefix, first))
			continue
		}
		seenAction[a] = j
	}

	if t.Retention != "" {
		check(prefix+".retention", checkRetention(t.Retention))
	}
}

// checkColumns reports empty and repeated column names in the list at key,
// and returns the set of names.
func checkColumns(key string, cols []string, check func(key, msg string)) map[string]bool {
	set := make(map[string]bool, len(cols))
	first := make(map[string]int, len(cols))
	for j, col := range cols {
		k := fmt.Sprintf("%s[%d]", key, j)
		if strings.TrimSpace(col) == "" {
			check(k, "empty column name: write the column's name, or remove the entry")
			continue
		}
		if f, dup := first[col]; dup {
			check(k, fmt.Sprintf("%s is listed twice (also %s[%d]): remove one of them", col, key, f))
			continue
		}
		first[col] = j
		set[col] = true
	}
	return set
}

// maskedColumn finds column col of a mask_style map in the mask list. The
// keys of a map in the file come lowercased through viper, so a lowercase
// key also finds the one column that differs from it only in case
// ("createdat" finds "createdAt").
func maskedColumn(col string, mask []string) (string, bool) {
	if slices.Contains(mask, col) {
		return col, true
	}
	if col != strings.ToLower(col) {
		return "", false
	}
	found := ""
	for _, m := range mask {
		if strings.ToLower(m) == col {
			if found != "" {
				return "", false // two columns differ only in case
			}
			found = m
		}
	}
	return found, found != ""
}

// sortedKeys returns the keys of m in order, for messages in a stable order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkTableName checks a table name or pattern: schema.table, or table
// meaning public.table, each part a lowercase unquoted identifier or a
// path.Match pattern of identifier characters.
func checkTableName(name string) string {
	if name == "" {
		return "required: name the table as schema.table, e.g. public.orders, or a pattern such as public.*"
	}
	schema, table := Table{Name: name}.Split()
	for _, part := range []string{schema, table} {
		if !strings.ContainsAny(part, "*?[]") {
			if !plainIdent.MatchString(part) {
				return fmt.Sprintf("%q is not a table name: write schema.table (or table, meaning public.table) in lowercase unquoted identifiers, e.g. public.orders, or a pattern of them with * ? [ ], e.g. public.* or billing.invoice_*", name)
			}
			continue
		}
		if msg := checkPatternChars(part); msg != "" {
			return fmt.Sprintf("%q is not a table pattern: %s; write schema.table with * ? [ ] in either part, e.g. public.*, billing.invoice_* or *.audit_log", name, msg)
		}
		if _, err := path.Match(part, ""); errors.Is(err, path.ErrBadPattern) {
			return fmt.Sprintf("%q is not a valid pattern: close every [ with ] and put characters or ranges between them, e.g. billing.invoice_[0-9]*", name)
		}
	}
	return ""
}

// checkPatternChars reports a character in one part of a pattern that no
// unquoted identifier can match: outside brackets identifier characters and
// * ?, inside them identifier characters, ranges (a-z) and a leading ^.
func checkPatternChars(part string) string {
	inClass := false
	for i, r := range part {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
		case r >= 'A' && r <= 'Z':
			return fmt.Sprintf("%q has a capital letter, and unquoted names are lowercase", part)
		case !inClass && (r == '*' || r == '?'):
		case !inClass && r == '[':
			inClass = true
		case inClass && r == ']':
			inClass = false
		case inClass && r == '-':
		case inClass && r == '^' && part[i-1] == '[':
		case r == '.':
			return fmt.Sprintf("%q has a dot, and a name has only one, between schema and table", part)
		default:
			return fmt.Sprintf("%q has %q, which no unquoted name holds", part, r)
		}
	}
	return ""
}

// CheckPeriod checks a retention period such as 90d or 7y: a whole number
// above 0 and a unit, at most 36500 days, 5215 weeks, 1200 months or 100
// years.
func CheckPeriod(s string) error {
	if msg := checkRetention(s); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// checkRetention checks a retention period such as 90d or 7y.
func checkRetention(s string) string {
	if retentionPeriod.MatchString(s) {
		n, err := strconv.Atoi(s[:len(s)-1])
		if most := map[byte]int{'d': 36500, 'w': 5215, 'm': 1200, 'y': 100}[s[len(s)-1]]; err == nil && n >= 1 && n <= most {
			return ""
		}
	}
	return fmt.Sprintf("%q is not a retention period: write a whole number above 0 and a unit d (days), w (weeks), m (months) or y (years), at most 100 years, e.g. 90d or 7y, or leave the key out for the default", s)
}
