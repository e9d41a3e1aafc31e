package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// ByteSize is a number of bytes. In YAML and in the environment it is a
// whole number with a unit, B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB
// (powers of 1024), in any case and with an optional space, such as 8MiB,
// 512 KiB or 64MB; or a plain whole number of bytes.
type ByteSize int64

// The binary units of a ByteSize.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
)

// sizeUnits are the units a ByteSize is written in, largest first; String
// takes the first that divides the size.
var sizeUnits = []struct {
	name string
	size ByteSize
}{
	{"GiB", GiB},
	{"GB", 1000 * 1000 * 1000},
	{"MiB", MiB},
	{"MB", 1000 * 1000},
	{"KiB", KiB},
	{"KB", 1000},
}

// String writes the size in the largest unit that divides it, such as
// "8MiB", "64MB" or "1000B"; ParseByteSize reads it back to the same size.
func (b ByteSize) String() string {
	if b != 0 {
		for _, u := range sizeUnits {
			if b%u.size == 0 {
				return strconv.FormatInt(int64(b/u.size), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// sizeHint ends every message about a value that is not a size.
const sizeHint = "want a size such as 8MiB or 512KiB"

// ParseByteSize reads a size such as "8MiB", "512 KiB", "64mb" or
// "1048576" (bytes). A sign is allowed, so that a negative size reaches
// the range check; a fraction is not.
func ParseByteSize(s string) (ByteSize, error) {
	text := strings.TrimSpace(s)
	end := 0
	if end < len(text) && (text[end] == '-' || text[end] == '+') {
		end++
	}
	for end < len(text) && text[end] >= '0' && text[end] <= '9' {
		end++
	}
	unit := ByteSize(1)
	if name := strings.TrimSpace(text[end:]); name != "" && name != "b" && name != "B" {
		unit = 0
		for _, u := range sizeUnits {
			if strings.EqualFold(name, u.name) {
				unit = u.size
				break
			}
		}
		if unit == 0 {
			return 0, fmt.Errorf("cannot use %q: %s", s, sizeHint)
		}
	}
	n, err := strconv.ParseInt(text[:end], 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%q is too large: %s", s, sizeHint)
		}
		return 0, fmt.Errorf("cannot use %q: %s", s, sizeHint)
	}
	if n > math.MaxInt64/int64(unit) || n < math.MinInt64/int64(unit) {
		return 0, fmt.Errorf("%q is too large: %s", s, sizeHint)
	}
	return ByteSize(n) * unit, nil
}

var byteSizeType = reflect.TypeFor[ByteSize]()

// byteSizeHook decodes sizes from strings (the file's "8MiB", or any value
// from the environment) and from whole numbers of bytes.
func byteSizeHook(from, to reflect.Type, data any) (any, error) {
	if to != byteSizeType || from == byteSizeType {
		return data, nil
	}
	switch v := reflect.ValueOf(data); v.Kind() {
	case reflect.String:
		return ParseByteSize(v.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return ByteSize(v.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.Uint() > math.MaxInt64 {
			return nil, fmt.Errorf("%d is too large: %s", v.Uint(), sizeHint)
		}
		return ByteSize(v.Uint()), nil
	case reflect.Float32, reflect.Float64:
		// YAML reads 1e6 as a float: take it when it is a whole number.
		f := v.Float()
		if f == math.Trunc(f) && f >= math.MinInt64 && f < math.MaxInt64 {
			return ByteSize(f), nil
		}
	}
	return nil, fmt.Errorf("cannot use %s: %s", describe(data), sizeHint)
}

// checkByteSize reports a size outside [least, most].
func checkByteSize(b, least, most ByteSize, example string) string {
	if b < least || b > most {
		return fmt.Sprintf("%s is out of range: use a size from %s to %s, e.g. %s", b, least, most, example)
	}
	return ""
}
