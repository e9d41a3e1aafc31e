package daemon

import (
	"time"
)

// noteError remembers the last error, for /readyz and walscribe status.
func (d *Daemon) noteError(msg string) {
	d.errMu.Lock()
	d.lastErr, d.lastErrAt = msg, time.Now().UTC()
	d.errMu.Unlock()
}

// Readiness says whether the daemon does its job: streaming, and the sink
// writable. Reason says why not.
type Readiness struct {
	Ready     bool   `json:"ready"`
	Streaming bool   `json:"streaming"`
	Sink      bool   `json:"sink_writable"`
	Reason    string `json:"reason,omitempty"`
	// LastError is the last error the daemon or its sink met (and
	// retried), with its time; empty when none.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// IntegrityViolation is the last time the stored head of the
	// integrity log was found to differ from the daemon's own, and how;
	// empty when never.
	IntegrityViolation   string     `json:"integrity_violation,omitempty"`
	IntegrityViolationAt *time.Time `json:"integrity_violation_at,omitempty"`
}

// integrityChecker is a sink that keeps the integrity log.
type integrityChecker interface {
	IntegrityViolation() (string, time.Time)
}

// Ready reports the daemon's readiness.
func (d *Daemon) Ready() Readiness {
	ok, sinkErr, sinkErrAt := d.sink.Health()
	r := Readiness{Streaming: d.streaming.Load(), Sink: ok}
	d.errMu.Lock()
	lastErr, lastErrAt := d.lastErr, d.lastErrAt
	d.errMu.Unlock()
	if sinkErr != "" && sinkErrAt.After(lastErrAt) {
		lastErr, lastErrAt = sinkErr, sinkErrAt
	}
	if lastErr != "" {
		r.LastError, r.LastErrorAt = lastErr, &lastErrAt
	}
	if last := d.lastMessage.Load(); r.Streaming && time.Since(time.Unix(0, last)) > d.cfg.StallTimeout {
		r.Streaming = false
	}
	if ic, ok := d.sink.(integrityChecker); ok {
		if v, at := ic.IntegrityViolation(); v != "" {
			r.IntegrityViolation, r.IntegrityViolationAt = v, &at
		}
	}
	switch {
	case r.IntegrityViolation != "":
		r.Reason = "integrity violation: " + r.IntegrityViolation + "; run walscribe verify"
	case !r.Streaming && !r.Sink:
		r.Reason = "not streaming from the source, and the sink is not writable"
	case !r.Streaming:
		r.Reason = "not streaming from the source (connecting, standing by, or the source is unreachable)"
	case !r.Sink:
		r.Reason = "the sink is not writable: the last write failed"
	}
	r.Ready = r.Streaming && r.Sink && r.IntegrityViolation == ""
	return r
}
