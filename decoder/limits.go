package decoder

import (
	"strings"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/jsonb"
)

// Limits bound what an application's context and events put into each
// entry: a context is stored with every change it applies to, so a large
// one multiplies. Values over a limit are cut, flagged truncated, never
// dropped in silence. Zero fields take the defaults.
type Limits struct {
	// ContextField is the most bytes of actor_id, actor, user_agent,
	// request_id and the other text fields of a context. Default 1 KiB.
	ContextField int
	// ContextJSON is the most bytes of the context's JSON object
	// (audit.context). Default 8 KiB.
	ContextJSON int
	// EventData is the most bytes of an event's data. Default 64 KiB.
	EventData int
}

// SetLimits makes l the limits in force.
func (d *Decoder) SetLimits(l Limits) {
	if l.ContextField <= 0 {
		l.ContextField = 1 << 10
	}
	if l.ContextJSON <= 0 {
		l.ContextJSON = 8 << 10
	}
	if l.EventData <= 0 {
		l.EventData = 64 << 10
	}
	d.limits = l
}

// limitContext cuts c's fields to the limits, flagging c.
func (d *Decoder) limitContext(c *audit.Context) {
	cut := false
	for _, s := range []*string{&c.ActorID, &c.Actor, &c.UserAgent, &c.RequestID, &c.DBUser, &c.LoginUser, &c.ApplicationName} {
		if len(*s) > d.limits.ContextField {
			*s = strings.ToValidUTF8((*s)[:d.limits.ContextField], "")
			cut = true
		}
	}
	if len(c.Extra) > d.limits.ContextJSON {
		c.Extra = jsonb.Stub(c.Extra)
		cut = true
	}
	if cut {
		c.Flag(audit.FlagTruncated)
	}
}
