package browse

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	jan := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name         string
		since, until time.Time
		days         int
		want         [2]time.Time
	}{
		{"default", time.Time{}, time.Time{}, 0, [2]time.Time{now.Add(-7 * day), now.Add(time.Second)}},
		{"days", time.Time{}, time.Time{}, 3, [2]time.Time{now.Add(-3 * day), now.Add(time.Second)}},
		{"since", jan, time.Time{}, 0, [2]time.Time{jan, now.Add(time.Second)}},
		{"until: the days before it", time.Time{}, jan, 0, [2]time.Time{jan.Add(-7 * day), jan}},
		{"until and days", time.Time{}, jan, 2, [2]time.Time{jan.Add(-2 * day), jan}},
		{"both", jan.Add(-day), jan, 0, [2]time.Time{jan.Add(-day), jan}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := Window(c.since, c.until, c.days, 7, now)
			if !f.Since.Equal(c.want[0]) || !f.Until.Equal(c.want[1]) {
				t.Errorf("%s .. %s, want %s .. %s", f.Since, f.Until, c.want[0], c.want[1])
			}
		})
	}
}
