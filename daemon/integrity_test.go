package daemon

import (
	"strings"
	"testing"
	"time"
)

// TestIntegrityViolationMakesItNotReady: the newest signed checkpoint
// removed under a running daemon is found at its next checkpoint, and
// /readyz says so (not ready, with the reason).
func TestIntegrityViolationMakesItNotReady(t *testing.T) {
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	h.start()
	h.exec(`INSERT INTO t SELECT generate_series(1, 100)`)
	h.sync()
	if r := h.d.Ready(); r.IntegrityViolation != "" {
		t.Fatalf("an untouched log: %+v", r)
	}
	// Signed once the sink is idle for the interval.
	deadline := time.Now().Add(10 * time.Second)
	for h.count(`SELECT count(*) FROM audit.integrity_checkpoints`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint signed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.exec(unguard)
	h.exec(`ALTER TABLE audit.integrity_checkpoints DISABLE TRIGGER USER`)
	h.exec(`DELETE FROM audit.integrity_checkpoints`)
	h.exec(`INSERT INTO t SELECT generate_series(101, 200)`)
	h.sync()
	deadline = time.Now().Add(10 * time.Second)
	for {
		r := h.d.Ready()
		if r.IntegrityViolation != "" {
			if r.Ready || !strings.Contains(r.Reason, "integrity violation") {
				t.Errorf("readiness with a violation: %+v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no violation found after the checkpoints were deleted: %+v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.stop()
}
