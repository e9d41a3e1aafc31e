// Package restore undoes one stored audit entry on the source database:
// a delete entry is restored (the old image inserted again), an update
// entry is reverted (its changed columns set back to their old values, if
// they still hold the new ones), an insert entry is undone (the row
// deleted, if every column still holds what the insert gave it).
//
// The work has three steps, each on the connection it needs (the trail may
// live in another database than the source):
//
//   - Load reads the entry, and the rules in force when it was written
//     (the trail's rules table), from the trail;
//   - Plan checks it against the source's catalog and current row, and
//     builds the statement, both as parameterised SQL and as text with
//     quoted literals that can be pasted into psql. Planning only reads:
//     a plan is a dry run;
//   - Apply runs a plan in one transaction: it sets who acts (the context
//     bridge's variables), locks and checks the row again, makes the change
//     and records a "restored" event through the bridge's log_event, so that
//     the event exists exactly when the restore commits.
//
// Stored values are converted back by PostgreSQL itself (jsonb_to_record
// with the columns' types, which reads what to_jsonb writes, composites
// and arrays of them included), never by hand. Names are quoted as
// pgx.Identifier quotes them, values travel as parameters or, in the text
// form, as literals quoted as quote_literal quotes them.
//
// A plan is refused (Plan.Refusals, Code) where the trail cannot bring the
// row back faithfully: a value masked by the rules, a column they left
// out, an image without the columns needed (no old image, the key only),
// a flag saying the entry was altered to be stored, a json document kept
// as a string, a table gone or without a primary key, a column gone or
// now generated, a column missing from the image that cannot take its
// default, a value the column's type no longer takes, and a row that
// changed since the entry. Updates kept with diff: changes hold all a
// revert needs and are not refused.
//
// What the images cannot say, and a restore therefore cannot bring back:
// whether a null in a nullable json or jsonb column was SQL NULL or a JSON
// null (written as SQL NULL, noted in the plan), JSON nulls inside arrays
// of json (written as NULL elements), a json document's white space, key
// order and duplicate keys (written as jsonb prints it, noted), and an
// array's lower bounds (written from 1, as to_jsonb drops them). A table
// dropped and created again under the same name, or a column dropped and
// added again as the newest column under the same name, is taken for the
// one the entry names.
package restore

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Defaults of Config.
const (
	DefaultSchema  = "audit"
	DefaultPrefix  = "audit"
	DefaultAppRole = "walscribe_app"
)

// Config says where walscribe's objects are. The zero value is walscribe's
// default configuration.
type Config struct {
	// Schema is the audit schema (sink.schema): in the trail it holds
	// entries and rules, in the source the context bridge's log_event.
	// Default "audit".
	Schema string
	// Prefix is the prefix of the context variables (context.prefix), as in
	// audit.actor_id. Default "audit".
	Prefix string
	// AppRole is the application group that may call log_event
	// (roles.app), named in the error when the restoring role may not.
	// Default "walscribe_app".
	AppRole string
	// Slot, when set, reads only the rules this slot recorded; "" reads
	// those of every slot writing to the trail and refuses what any of
	// them masked or left out.
	Slot string
}

func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.AppRole == "" {
		c.AppRole = DefaultAppRole
	}
	return c
}

// Restorer loads, plans and applies restores. It holds no connection and
// is safe for concurrent use.
type Restorer struct {
	cfg Config
}

// New returns a Restorer for cfg; it does no I/O.
func New(cfg Config) *Restorer {
	return &Restorer{cfg: cfg.withDefaults()}
}

// Querier reads: *pgx.Conn, pgx.Tx, *pgxpool.Pool and *pgxpool.Conn.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Beginner starts a transaction: *pgx.Conn, *pgxpool.Pool, *pgxpool.Conn,
// or a pgx.Tx (which then starts a savepoint).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

var (
	_ Querier  = (*pgx.Conn)(nil)
	_ Querier  = pgx.Tx(nil)
	_ Beginner = (*pgx.Conn)(nil)
	_ Beginner = pgx.Tx(nil)
)
