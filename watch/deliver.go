package watch

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Attempts per delivery, and the most a webhook's response body is read.
const (
	recordAttempts  = 3
	webhookAttempts = 3
	recordTimeout   = 30 * time.Second
	maxResponseBody = 64 << 10
)

// The headers of a webhook request.
const (
	// HeaderAlert holds the alert's ID, the same in every attempt.
	HeaderAlert = "X-Walscribe-Alert"
	// HeaderTimestamp holds the time of the attempt, in Unix seconds.
	HeaderTimestamp = "X-Walscribe-Timestamp"
	// HeaderSignature holds "sha256=" and Sign's result, when the watch has
	// a secret.
	HeaderSignature = "X-Walscribe-Signature"
)

// Sign returns the lowercase hex HMAC-SHA256, keyed by secret, of the
// timestamp (HeaderTimestamp's value), a dot and the body: what
// HeaderSignature carries after "sha256=". A receiver recomputes it over
// the raw body, compares it in constant time (hmac.Equal), and refuses
// timestamps more than a few minutes old to stop replays.
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Open starts the delivery: a goroutine that records alerts in the trail,
// one that posts them to webhooks, and one that updates the gauges. They
// run until Close, whatever becomes of ctx (only its values are used).
func (e *Evaluator) Open(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.opened || e.closed {
		return errors.New("watch: the evaluator was opened already")
	}
	e.opened = true
	e.workCtx, e.cancelWork = context.WithCancel(context.WithoutCancel(ctx))
	e.wg.Add(3)
	go func() {
		defer e.wg.Done()
		for a := range e.recordQ {
			e.deliver(a, targetRecord, e.record)
		}
	}()
	go func() {
		defer e.wg.Done()
		for a := range e.hookQ {
			e.deliver(a, targetWebhook, e.post)
		}
	}()
	go func() {
		defer e.wg.Done()
		t := time.NewTicker(e.sweepEvery)
		defer t.Stop()
		for {
			select {
			case <-e.stopSweep:
				e.sweep()
				return
			case <-t.C:
				e.sweep()
			}
		}
	}()
	return nil
}

// Close stops taking alerts (later ones are dropped and counted) and
// delivers those queued, until ctx is done: then deliveries under way are
// cancelled, the rest dropped, and the error says so.
func (e *Evaluator) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	close(e.recordQ)
	close(e.hookQ)
	close(e.stopSweep)
	opened := e.opened
	e.mu.Unlock()
	if !opened {
		for _, q := range []struct {
			ch     chan *Alert
			target string
		}{{e.recordQ, targetRecord}, {e.hookQ, targetWebhook}} {
			for a := range q.ch {
				e.byName[a.Watch].m.delivery[[2]string{q.target, resultDropped}].Inc()
			}
		}
		return nil
	}
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		e.cancelWork()
		return nil
	case <-ctx.Done():
		e.cancelWork()
		<-done
		return fmt.Errorf("watch: alerts left undelivered at shutdown: %w", ctx.Err())
	}
}

// enqueue hands a fired alert to its targets' queues, or drops it for a
// target whose queue is full. The caller holds e.mu.
func (e *Evaluator) enqueue(a *Alert) {
	r := e.byName[a.Watch]
	for _, t := range []struct {
		on     bool
		q      chan *Alert
		target string
	}{{e.rec != nil, e.recordQ, targetRecord}, {r.Webhook != "", e.hookQ, targetWebhook}} {
		if !t.on {
			continue
		}
		if e.closed {
			e.dropped(r, t.target)
			continue
		}
		select {
		case t.q <- a:
		default:
			e.dropped(r, t.target)
		}
	}
}

// dropped counts an alert not delivered to target ("": to each of the
// watch's targets), and logs it at most every 10 seconds per target. The
// caller holds e.mu.
func (e *Evaluator) dropped(r *rule, target string) {
	targets := []string{target}
	if target == "" {
		targets = []string{targetRecord, targetWebhook}
	}
	now := e.now()
	for _, t := range targets {
		c, ok := r.m.delivery[[2]string{t, resultDropped}]
		if !ok {
			continue
		}
		c.Inc()
		e.dropCount[t]++
		if now.Sub(e.dropLog[t]) >= 10*time.Second {
			e.log.Warn("watch: alerts dropped: the delivery queue is full (or walscribe is stopping); see walscribe_watch_deliveries_total",
				zap.String("target", t), zap.String("watch", r.Name), zap.Int("dropped", e.dropCount[t]), zap.Int("queue_size", e.queueSize))
			e.dropLog[t], e.dropCount[t] = now, 0
		}
	}
}

// deliver runs one delivery and counts its result.
func (e *Evaluator) deliver(a *Alert, target string, do func(*rule, *Alert) error) {
	r := e.byName[a.Watch]
	if e.workCtx.Err() != nil {
		r.m.delivery[[2]string{target, resultDropped}].Inc()
		return
	}
	if err := do(r, a); err != nil {
		r.m.delivery[[2]string{target, resultFailed}].Inc()
		if e.workCtx.Err() == nil {
			e.log.Error("watch: an alert could not be delivered", zap.String("target", target), zap.String("watch", a.Watch),
				zap.String("alert", a.ID), zap.Error(err))
		}
		return
	}
	r.m.delivery[[2]string{target, resultOK}].Inc()
}

// retry runs attempt up to n times, waiting wait, then twice as long,
// between them, while it fails with a retryable error.
func (e *Evaluator) retry(n int, wait time.Duration, attempt func() (retryable bool, err error)) error {
	for i := 1; ; i++ {
		retryable, err := attempt()
		if err == nil || !retryable || i == n {
			return err
		}
		select {
		case <-time.After(wait):
		case <-e.workCtx.Done():
			return err
		}
		wait *= 2
	}
}

// record writes the alert into the trail.
func (e *Evaluator) record(_ *rule, a *Alert) error {
	return e.retry(recordAttempts, e.recordWait, func() (bool, error) {
		ctx, cancel := context.WithTimeout(e.workCtx, recordTimeout)
		defer cancel()
		_, err := e.rec.Record(ctx, "watch", "alert", a)
		if err != nil {
			return true, fmt.Errorf("record in the trail: %w", err)
		}
		return false, nil
	})
}

// post sends the alert to the watch's webhook.
func (e *Evaluator) post(r *rule, a *Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return e.retry(webhookAttempts, e.webhookWait, func() (bool, error) { return e.postOnce(r, a.ID, body) })
}

func (e *Evaluator) postOnce(r *rule, id string, body []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(e.workCtx, r.WebhookTimeout)
	defer cancel()
	host := r.Webhook
	if u, err := url.Parse(r.Webhook); err == nil {
		host = u.Host // the path and query may hold a token: kept out of logs
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.Webhook, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("webhook %s: %w", host, err)
	}
	ts := strconv.FormatInt(e.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "walscribe-watch")
	req.Header.Set(HeaderAlert, id)
	req.Header.Set(HeaderTimestamp, ts)
	if len(r.secret) > 0 {
		req.Header.Set(HeaderSignature, "sha256="+Sign(r.secret, ts, body))
	}
	resp, err := e.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return true, fmt.Errorf("webhook %s: %w", host, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return true, fmt.Errorf("webhook %s: %s", host, resp.Status)
	default:
		return false, fmt.Errorf("webhook %s: %s (not retried)", host, resp.Status)
	}
}
