package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// problem is one thing wrong with the configuration, at one key.
type problem struct {
	key string // as in the file: "source.dsn", "tables[1].name"
	msg string // what is wrong and how to fix it
}

func (p problem) Error() string { return p.key + ": " + p.msg }

// joinProblems reports problems one per line, under a count when there are
// several. It returns nil for none.
func joinProblems[E error](problems []E) error {
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	default:
		return fmt.Errorf("%d problems:\n%w", len(errs), errors.Join(errs...))
	}
}

// tag is the key a struct field is read from.
func tag(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
	return name
}

// leaf is one key with a single value, such as source.dsn.
type leaf struct {
	key   string
	value any
}

// leaves lists the single-value keys of the sections in v, with their values
// in v. Lists (tables) are not leaves: their entries have no defaults.
func leaves(prefix string, v reflect.Value) []leaf {
	var out []leaf
	for i := range v.NumField() {
		key := tag(v.Type().Field(i))
		if prefix != "" {
			key = prefix + "." + key
		}
		switch field := v.Field(i); field.Kind() {
		case reflect.Struct:
			out = append(out, leaves(key, field)...)
		case reflect.Slice:
		default:
			out = append(out, leaf{key, field.Interface()})
		}
	}
	return out
}

// unknownKeys reports every key in value, the settings for key prefix, that
// has no field in t, the type they decode into. Values of the wrong shape are
// left to the decoder to report.
func unknownKeys(prefix string, value any, t reflect.Type) []error {
	var problems []error
	switch t.Kind() {
	case reflect.Struct:
		if t == maskStyleType {
			// A map of mask_style holds column names, not keys.
			return nil
		}
		settings, ok := value.(map[string]any)
		if !ok {
			return nil
		}
		fields := make(map[string]reflect.Type, t.NumField())
		var names []string
		for i := range t.NumField() {
			name := tag(t.Field(i))
			fields[name] = t.Field(i).Type
			names = append(names, name)
		}
		for _, k := range slices.Sorted(maps.Keys(settings)) {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			ft, ok := fields[k]
			if !ok {
				problems = append(problems, problem{key, "unknown key: " + suggest(k, names, "the keys here are")})
				continue
			}
			problems = append(problems, unknownKeys(key, settings[k], ft)...)
		}
	case reflect.Slice:
		items, ok := value.([]any)
		if !ok {
			return nil
		}
		for i, item := range items {
			problems = append(problems, unknownKeys(fmt.Sprintf("%s[%d]", prefix, i), item, t.Elem())...)
		}
	}
	return problems
}

// suggest names the choice closest to word ("did you mean name?"), or lists
// them all after intro when none is close. A choice is close when it is a
// few edits away, ignoring case ("INFO", "nmae"), or when one starts with the
// other ("deb" for debug, "warning" for warn).
func suggest(word string, choices []string, intro string) string {
	word = strings.ToLower(word)
	best, bestDist := "", -1
	for _, c := range choices {
		d := distance(word, c)
		near := d <= max(1, len(c)/3) ||
			(len(word) >= 3 && strings.HasPrefix(c, word)) ||
			(len(c) >= 3 && strings.HasPrefix(word, c))
		if near && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	if best != "" {
		return "did you mean " + best + "?"
	}
	return intro + " " + strings.Join(choices, ", ")
}

// distance is the number of single-character insertions, deletions,
// substitutions and swaps of neighbours that turn a into b (optimal string
// alignment), so "nmae" is 1 from "name".
func distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

var durationType = reflect.TypeFor[time.Duration]()

// durationHook decodes durations from strings with a unit, such as "100ms"
// or "10s". A bare number is an error, not a count of nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from == durationType {
		return data, nil
	}
	s, ok := data.(string)
	if !ok {
		return nil, fmt.Errorf("%v has no unit: write a duration such as 100ms, 10s or 1m", data)
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%q is not a duration: write a number with a unit, such as 100ms, 10s or 1m", s)
	}
	return d, nil
}

var maskStyleType = reflect.TypeFor[MaskStyle]()

// maskStyleHook decodes mask_style from one word for every masked column
// (redact) or a map of column to word ({card_number: redact}), where the
// columns the map leaves out use hash. Validate checks the words.
func maskStyleHook(from, to reflect.Type, data any) (any, error) {
	if to != maskStyleType || from == maskStyleType {
		return data, nil
	}
	const how = "want hash or redact, or a map of column to style such as {card_number: redact}"
	switch v := data.(type) {
	case nil:
		return MaskStyle{}, nil
	case string:
		if v == "" {
			return nil, fmt.Errorf("cannot use \"\": %s; leave the key out for hash", how)
		}
		return MaskStyle{Default: v}, nil
	case map[string]any:
		style := MaskStyle{Default: StyleHash}
		for _, col := range slices.Sorted(maps.Keys(v)) {
			word, ok := v[col].(string)
			if !ok {
				return nil, fmt.Errorf("cannot use %s for column %s: want hash or redact", describe(v[col]), col)
			}
			if style.PerColumn == nil {
				style.PerColumn = make(map[string]string, len(v))
			}
			style.PerColumn[col] = word
		}
		return style, nil
	default:
		return nil, fmt.Errorf("cannot use %s: %s", describe(data), how)
	}
}

// shapeHook rejects values that the decoder would otherwise change without
// a word: a fraction or true/false where a whole number belongs (5000.5 would
// become 5000, true would become 1), a number where true or false belongs (2
// would become true), and a single value where a section or a
// list belongs (tables: public.orders would become one entry that cannot be
// read).
func shapeHook(from, to reflect.Type, data any) (any, error) {
	if to == durationType || to == byteSizeType {
		return data, nil // durationHook or byteSizeHook has decided
	}
	wrong := false
	switch to.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		switch v := data.(type) {
		case bool:
			wrong = true
		case float64:
			wrong = v != math.Trunc(v)
		case float32:
			wrong = float64(v) != math.Trunc(float64(v))
		}
	case reflect.Bool:
		switch data.(type) {
		case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
			wrong = true
		}
	case reflect.Struct:
		wrong = from.Kind() != reflect.Map && from.Kind() != reflect.Struct
	case reflect.Slice:
		wrong = from.Kind() != reflect.Slice && from.Kind() != reflect.Array
	}
	if wrong {
		return nil, fmt.Errorf("cannot use %s: want %s", describe(data), want(to))
	}
	return data, nil
}

// decodeProblems turns the decoder's error into one problem per key, and
// returns those keys so that validation does not report them again.
func decodeProblems(err error) (problems []error, keys []string) {
	for _, e := range flatten(err) {
		var de *mapstructure.DecodeError
		if !errors.As(e, &de) {
			problems = append(problems, e)
			continue
		}
		problems = append(problems, problem{de.Name(), decodeMessage(de.Unwrap())})
		keys = append(keys, de.Name())
	}
	return problems, keys
}

// flatten lists the errors joined in err.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*mapstructure.DecodeError); ok {
		return []error{err}
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	if inner := errors.Unwrap(err); inner != nil {
		return flatten(inner)
	}
	return []error{err}
}

// decodeMessage says what a value that could not be decoded should be.
func decodeMessage(err error) string {
	var parseErr *mapstructure.ParseError
	if errors.As(err, &parseErr) {
		return fmt.Sprintf("cannot use %s: want %s", describe(parseErr.Value), want(parseErr.Expected.Type()))
	}
	var typeErr *mapstructure.UnconvertibleTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("cannot use %s: want %s", describe(typeErr.Value), want(typeErr.Expected.Type()))
	}
	return err.Error()
}

// describe shows a value from the file or the environment in a message.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing"
	case string:
		return strconv.Quote(v)
	case map[string]any:
		return "a section of keys"
	case []any:
		return "a list"
	case float64:
		// 1048576.5, not 1.0485765e+06.
		if math.Abs(v) < 1e21 {
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
		return fmt.Sprint(v)
	default:
		return fmt.Sprint(v)
	}
}

// want says what a key of type t takes.
func want(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 100ms, 10s or 1m"
	case t == byteSizeType:
		return "a size such as 8MiB or 512KiB"
	case t == reflect.TypeFor[Table]():
		return "an entry like `name: public.orders`"
	case t == reflect.TypeFor[[]Table]():
		return "a list of entries like `- name: public.orders`"
	case t == maskStyleType:
		return "hash or redact, or a map of column to style such as {card_number: redact}"
	case t == reflect.TypeFor[[]string]():
		return "a list such as [a, b]"
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.String:
		return "a string"
	case reflect.Struct:
		return "a section of keys"
	default:
		return t.String()
	}
}

// coveredBy reports whether key is one of keys or inside one of them.
func coveredBy(key string, keys []string) bool {
	for _, k := range keys {
		if key == k || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"[") {
			return true
		}
	}
	return false
}
