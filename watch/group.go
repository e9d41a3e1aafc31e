package watch

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/walscribe/walscribe/audit"
)

// buckets is how many steps a window is counted in: a bucket covers a
// thirtieth of it.
const buckets = 30

// sampleSize is the most entry ids an alert lists.
const sampleSize = 20

// maxGroupBytes bounds the part of a group's value kept: a longer value
// (an actor of a megabyte) is kept as its beginning and a hash of the
// whole, and shown with its SHA-256.
const maxGroupBytes = 256

// groupKey identifies a group within a watch. Building one allocates
// nothing: it holds the entry's own strings.
type groupKey struct {
	a, b string     // the value; for table, schema and table
	ip   netip.Addr // for ip
	sum  uint64     // for a value longer than maxGroupBytes (a holds its beginning)
}

// keyOf is the group of e in a watch grouped by by.
func keyOf(by GroupBy, e *audit.Entry, seed maphash.Seed) groupKey {
	var s string
	c := e.Ctx
	switch by {
	case ByAll:
		return groupKey{}
	case ByTable:
		return groupKey{a: bounded(e.Schema), b: bounded(e.Table)}
	case ByIP:
		if c == nil || !c.IP.IsValid() {
			return groupKey{}
		}
		return groupKey{ip: c.IP.Addr()}
	case ByClientAddr:
		if c == nil || !c.ClientAddr.IsValid() {
			return groupKey{}
		}
		return groupKey{ip: c.ClientAddr.Addr()}
	case ByActorID:
		if c != nil {
			s = c.ActorID
		}
	case ByActor:
		if c != nil {
			s = c.Actor
		}
	case ByDBUser:
		if c != nil {
			s = c.DBUser
		}
	case ByRequestID:
		if c != nil {
			s = c.RequestID
		}
	}
	if len(s) > maxGroupBytes {
		return groupKey{a: s[:maxGroupBytes], sum: maphash.String(seed, s)}
	}
	return groupKey{a: s}
}

// bounded clips a schema or table name (at most audit.MaxNameBytes when
// stored) to what a key keeps.
func bounded(s string) string {
	if len(s) > maxGroupBytes {
		return s[:maxGroupBytes]
	}
	return s
}

// owned is k with copies of its strings, to be kept beyond the entry.
func (k groupKey) owned() groupKey {
	k.a, k.b = strings.Clone(k.a), strings.Clone(k.b)
	return k
}

// labelOf is how the group of e is shown in an alert: the value, or for a
// value longer than maxGroupBytes its valid UTF-8 beginning and its
// SHA-256.
func labelOf(by GroupBy, e *audit.Entry) string {
	c := e.Ctx
	var s string
	switch by {
	case ByAll:
		return ""
	case ByTable:
		s = e.Schema + "." + e.Table
	case ByIP:
		if c != nil && c.IP.IsValid() {
			s = c.IP.Addr().String()
		}
	case ByClientAddr:
		if c != nil && c.ClientAddr.IsValid() {
			s = c.ClientAddr.Addr().String()
		}
	case ByActorID:
		if c != nil {
			s = c.ActorID
		}
	case ByActor:
		if c != nil {
			s = c.Actor
		}
	case ByDBUser:
		if c != nil {
			s = c.DBUser
		}
	case ByRequestID:
		if c != nil {
			s = c.RequestID
		}
	}
	if len(s) <= maxGroupBytes {
		return strings.Clone(s)
	}
	sum := sha256.Sum256([]byte(s))
	return strings.ToValidUTF8(s[:maxGroupBytes-80], "") + "… (sha256 " + hex.EncodeToString(sum[:]) + ")"
}

// group is the state of one group of a windowed watch: its entries per
// bucket over the last window, whether it is in breach, and the ids of its
// latest entries.
type group struct {
	key        groupKey
	label      string
	prev, next *group // in the tracker's order of use
	head       int64  // the slot (time / bucket width) of the newest bucket
	total      int64  // entries in the window
	counts     [buckets]uint32
	firsts     [buckets]int64 // the first entry id of each bucket
	recent     [sampleSize]int64
	nrecent    int // ids in recent
	breached   bool
	alert      *Alert // the alert of this group in the batch being observed
}

// advance moves the window so that slot is its newest bucket, dropping
// the buckets that leave it. An earlier slot changes nothing.
func (g *group) advance(slot int64) {
	if slot <= g.head {
		return
	}
	if slot-g.head >= buckets {
		g.counts, g.firsts, g.total = [buckets]uint32{}, [buckets]int64{}, 0
	} else {
		for s := g.head + 1; s <= slot; s++ {
			i := s % buckets
			g.total -= int64(g.counts[i])
			g.counts[i], g.firsts[i] = 0, 0
		}
	}
	g.head = slot
}

// add counts entry id in the newest bucket (advance has made it the
// entry's, or the entry came late and counts as of the newest).
func (g *group) add(id int64) {
	i := g.head % buckets
	if g.counts[i] == 0 {
		g.firsts[i] = id
	}
	if g.counts[i] < math.MaxUint32 {
		g.counts[i]++
		g.total++
	}
	g.recent[g.nrecent%sampleSize] = id
	g.nrecent++
}

// first is the id of the oldest entry in the window.
func (g *group) first() int64 {
	for s := g.head - buckets + 1; s <= g.head; s++ {
		if s < 0 {
			continue
		}
		if i := s % buckets; g.counts[i] > 0 {
			return g.firsts[i]
		}
	}
	return 0
}

// sample lists the ids of the group's latest entries, oldest first, from
// first on.
func (g *group) sample(first int64) []int64 {
	n := min(g.nrecent, sampleSize)
	out := make([]int64, 0, n)
	for k := g.nrecent - n; k < g.nrecent; k++ {
		if id := g.recent[k%sampleSize]; id >= first {
			out = append(out, id)
		}
	}
	return out
}

// tracker holds the groups of a windowed watch, at most max of them, in
// the order they were last used (front: least recently).
type tracker struct {
	limit       int64 // fire when a group's total passes it
	width       int64 // nanoseconds per bucket
	max         int
	groups      map[groupKey]*group
	front, back *group
	spare       *group // a group dropped, for reuse
	inBreach    int
	evicted     int64 // groups dropped while still counting, not yet reported
}

func newTracker(limit int64, window time.Duration, max int) *tracker {
	return &tracker{limit: limit, width: max64(int64(window)/buckets, 1), max: max,
		groups: make(map[groupKey]*group, min(max, 1024))}
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// slot is the bucket of time t.
func (t *tracker) slot(at time.Time) int64 {
	return max64(at.UnixNano(), 0) / t.width
}

// get returns the group of k, moved to the back of the order, or a new one
// (without a label yet), dropping the least recently used group when full.
// created tells which.
func (t *tracker) get(k groupKey, slot int64) (g *group, created bool) {
	if t.back != nil && t.back.key == k {
		return t.back, false // the group of the entry before, as in a bulk change
	}
	if g = t.groups[k]; g != nil {
		t.unlink(g)
		t.pushBack(g)
		return g, false
	}
	if len(t.groups) >= t.max {
		t.drop(t.front, slot)
	}
	if g = t.spare; g != nil {
		t.spare = nil
		*g = group{}
	} else {
		g = new(group)
	}
	g.key, g.head = k.owned(), slot
	t.groups[g.key] = g
	t.pushBack(g)
	return g, true
}

// drop forgets g; it counts as evicted when it still had entries in the
// window at slot now.
func (t *tracker) drop(g *group, now int64) {
	if now-g.head < buckets && g.total > 0 {
		t.evicted++
	}
	if g.breached {
		t.inBreach--
	}
	g.alert = nil
	t.unlink(g)
	delete(t.groups, g.key)
	t.spare = g
}

// expire forgets the groups whose window has passed by slot now.
func (t *tracker) expire(now int64) {
	for t.front != nil && now-t.front.head >= buckets {
		t.drop(t.front, now)
	}
}

// breaches counts the groups in breach whose count in the window, at slot
// now, is still above the limit.
func (t *tracker) breaches(now int64) int {
	if t.inBreach == 0 {
		return 0
	}
	n := 0
	for _, g := range t.groups {
		if !g.breached {
			continue
		}
		var total int64
		for s := max64(now-buckets+1, g.head-buckets+1); s <= g.head; s++ {
			if s >= 0 {
				total += int64(g.counts[s%buckets])
			}
		}
		if total > t.limit {
			n++
		}
	}
	return n
}

func (t *tracker) unlink(g *group) {
	if g.prev != nil {
		g.prev.next = g.next
	} else if t.front == g {
		t.front = g.next
	}
	if g.next != nil {
		g.next.prev = g.prev
	} else if t.back == g {
		t.back = g.prev
	}
	g.prev, g.next = nil, nil
}

func (t *tracker) pushBack(g *group) {
	g.prev = t.back
	if t.back != nil {
		t.back.next = g
	} else {
		t.front = g
	}
	t.back = g
}
