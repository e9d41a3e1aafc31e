package watch

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// span is a stretch of the day in minutes from midnight, start inclusive,
// end exclusive; end < start runs past midnight.
type span struct{ start, end int }

// schedule is the working time of an outside_hours watch.
type schedule struct {
	loc   *time.Location
	days  uint8 // bit i: time.Weekday(i) is a working day
	spans []span
}

// inside reports whether t falls on a working day, within working hours,
// by the wall clock of the schedule's time zone (a repeated hour at the end
// of summer time counts by its clock reading both times).
func (s *schedule) inside(t time.Time) bool {
	t = t.In(s.loc)
	if s.days&(1<<uint(t.Weekday())) == 0 {
		return false
	}
	m := t.Hour()*60 + t.Minute()
	for _, sp := range s.spans {
		if sp.start < sp.end && m >= sp.start && m < sp.end ||
			sp.start > sp.end && (m >= sp.start || m < sp.end) {
			return true
		}
	}
	return false
}

func newSchedule(hours, days, zone string) (*schedule, error) {
	spans, err := parseHours(hours)
	if err != nil {
		return nil, err
	}
	d, err := parseDays(days)
	if err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", zone, err)
	}
	return &schedule{loc: loc, days: d, spans: spans}, nil
}

// parseHours reads "08:00-18:00", several joined by commas.
func parseHours(s string) ([]span, error) {
	bad := func(part string) error {
		return fmt.Errorf("%q is not a range of hours: write HH:MM-HH:MM, several joined by commas, e.g. 08:00-18:00 or 08:00-12:00,13:00-17:00 (24:00 for midnight, 22:00-06:00 for a night)", clip(part))
	}
	var out []span
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		from, to, ok := strings.Cut(part, "-")
		if !ok {
			return nil, bad(part)
		}
		a, ok1 := parseClock(strings.TrimSpace(from))
		b, ok2 := parseClock(strings.TrimSpace(to))
		if !ok1 || !ok2 || a == 24*60 {
			return nil, bad(part)
		}
		if a == b || a == 0 && b == 24*60 {
			return nil, fmt.Errorf("%q covers no time or the whole day: to watch every day all day, use kind match", clip(part))
		}
		if b == 24*60 {
			b = 0 // up to midnight: a range past midnight ending there
		}
		out = append(out, span{a, b})
	}
	return out, nil
}

// parseClock reads H:MM or HH:MM, 00:00 to 24:00, as minutes.
func parseClock(s string) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && mm != 0 {
		return 0, false
	}
	return hh*60 + mm, true
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func dayIndex(s string) (int, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, d := range dayNames {
		if s == d {
			return i, true
		}
	}
	return 0, false
}

// parseDays reads "mon-fri", "mon,wed,fri", "fri-mon" (a range through the
// weekend) into a set of weekdays.
func parseDays(s string) (uint8, error) {
	var set uint8
	for part := range strings.SplitSeq(s, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, ok1 := dayIndex(from)
		b, ok2 := a, true
		if isRange {
			b, ok2 = dayIndex(to)
		}
		if !ok1 || !ok2 {
			return 0, fmt.Errorf("%q is not a day or range of days: write mon tue wed thu fri sat sun, ranges such as mon-fri and lists such as mon,wed,fri", clip(strings.TrimSpace(part)))
		}
		for i := a; ; i = (i + 1) % 7 {
			set |= 1 << uint(i)
			if i == b {
				break
			}
		}
	}
	return set, nil
}
