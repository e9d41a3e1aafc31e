package api

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walscribe/walscribe/internal/pg"
)

// Event is an application event, or a read of the trail, to record.
type Event struct {
	Action   string
	Target   string // schema.table it is about
	ObjectID string // "" for none
	Data     any    // marshalled to JSON; nil for none
	Who      Caller
}

// Caller is who asked, as the trail records it: the context of the
// event.
type Caller struct {
	ActorID   string
	Actor     string
	IP        string
	UserAgent string
	RequestID string
	// Via is stored as the event's context (the audit.context variable):
	// which token, of which role, the API recorded it for.
	Via map[string]string
}

// Events records events in the trail.
type Events interface {
	Log(ctx context.Context, e Event) error
}

// SourceEvents records events through the source database's
// log_event, as applications do: they reach the trail like any other
// event, kept whatever becomes of the transaction.
type SourceEvents struct {
	pool   *pgxpool.Pool
	fn     string // schema-qualified log_event, quoted
	prefix string // of the context variables
}

var _ Events = (*SourceEvents)(nil)

// NewSourceEvents records events with schema.log_event (the bridge's
// schema in the source database), with the context variables of prefix
// (context.prefix).
func NewSourceEvents(pool *pgxpool.Pool, schema, prefix string) *SourceEvents {
	return &SourceEvents{pool: pool, fn: pgx.Identifier{schema, "log_event"}.Sanitize(), prefix: prefix}
}

// Log records e. Its context is set for the one transaction that logs it.
func (s *SourceEvents) Log(ctx context.Context, e Event) error {
	var data any
	if e.Data != nil {
		b, err := json.Marshal(e.Data)
		if err != nil {
			return fmt.Errorf("record event %s: %w", e.Action, err)
		}
		data = string(b)
	}
	via := ""
	if len(e.Who.Via) > 0 {
		b, err := json.Marshal(e.Who.Via)
		if err != nil {
			return fmt.Errorf("record event %s: %w", e.Action, err)
		}
		via = string(b)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, v := range [][2]string{{"actor_id", e.Who.ActorID}, {"actor", e.Who.Actor}, {"ip", e.Who.IP},
			{"user_agent", e.Who.UserAgent}, {"request_id", e.Who.RequestID}, {"context", via}} {
			b.Queue(`SELECT set_config($1, $2, true)`, s.prefix+"."+v[0], v[1])
		}
		b.Queue(`SELECT `+s.fn+`($1, $2, $3, $4::jsonb, false)`, e.Action, nullIfEmpty(e.Target), nullIfEmpty(e.ObjectID), data)
		// A message outside a transaction is not flushed by itself: the
		// walsender sends only flushed WAL, so in a quiet database the event
		// would wait for someone else's commit. A transaction id makes this
		// one's commit flush it.
		b.Queue(`SELECT pg_current_xact_id()`)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		if pg.Is(err, "42501") || pg.Is(err, "42883") || pg.Is(err, "3F000") {
			return fmt.Errorf("record event %s: %w (the API records reads and events with %s in the source database: run walscribe setup there, and GRANT the application group (roles.app, walscribe_app) to the role of api.events_dsn)", e.Action, err, s.fn)
		}
		return fmt.Errorf("record event %s: %w", e.Action, err)
	}
	return nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
