package restore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/auditctx"
	"github.com/walscribe/walscribe/internal/pgtest"
)

// TestChangedSince: a row that changed after the entry is not touched,
// whether the change came before the plan or between plan and apply, and
// no event is recorded for a restore that did not happen. The context
// variables have a prefix of their own.
func TestChangedSince(t *testing.T) {
	c := newCapture(t, `CREATE TABLE plain (id int PRIMARY KEY, v text, w int)`, options{prefix: "my_app"})
	ctx := context.Background()
	c.exec(`INSERT INTO plain VALUES (1, 'a', 1)`, `UPDATE plain SET v = 'b'`, `UPDATE plain SET v = 'c'`,
		`INSERT INTO plain VALUES (2, 'x', 1)`, `UPDATE plain SET w = 2 WHERE id = 2`)
	c.sync()
	ups := c.ids("public", "plain", audit.Update)
	first, second := ups[0], ups[1]

	t.Run("update revert", func(t *testing.T) {
		mustRefuse(t, c.plan(first), CodeChangedSince, "")
		p := c.plan(second)
		mustNotRefuse(t, p)
		c.apply(p) // v is 'b' again: the first update's new value
		p = c.plan(first)
		mustNotRefuse(t, p)
		c.exec(`UPDATE plain SET w = 5 WHERE id = 1`) // not a column the update changed
		c.exec(`UPDATE plain SET v = 'z' WHERE id = 1`)
		err := c.r.Apply(ctx, c.src, p, ada)
		var refused *RefusedError
		if !errors.As(err, &refused) || len(refused.Refusals) != 1 || refused.Refusals[0].Column != "v" {
			t.Fatalf("apply after a change: %v", err)
		}
		if got := c.snapshot("plain"); !strings.Contains(got, "(1,z,5)") {
			t.Fatalf("plain: %s", got)
		}
		c.sync()
		if n := c.restoredEvents(first); n != 0 {
			t.Fatalf("%d restored events of a refused restore", n)
		}
		if n := c.restoredEvents(second); n != 1 {
			t.Fatalf("%d restored events of entry %d, want 1", n, second)
		}
		var actorID, requestID string // set under context.prefix my_app
		err = c.trail.QueryRow(ctx, `SELECT actor_id, request_id FROM audit.entries WHERE action = 'restored' AND (new->>'entry_id')::bigint = $1`, second).Scan(&actorID, &requestID)
		if err != nil || actorID != ada.ActorID || requestID != ada.RequestID {
			t.Fatalf("event by %q (request %q), want %q (%q): %v", actorID, requestID, ada.ActorID, ada.RequestID, err)
		}
	})

	t.Run("undo insert", func(t *testing.T) {
		mustRefuse(t, c.plan(c.find("plain", audit.Insert, `{"id": 2}`)), CodeChangedSince, "w")
	})

	t.Run("restore delete", func(t *testing.T) {
		c.exec(`DELETE FROM plain WHERE id = 2`)
		c.sync()
		del := c.find("plain", audit.Delete, `{"id": 2}`)
		p := c.plan(del)
		mustNotRefuse(t, p)
		c.exec(`INSERT INTO plain VALUES (2, 'again', 0)`)
		mustRefuse(t, c.plan(del), CodeChangedSince, "")
		err := c.r.Apply(ctx, c.src, p, ada)
		var refused *RefusedError
		if !errors.As(err, &refused) || !refused.Has(CodeChangedSince) {
			t.Fatalf("apply over a row inserted since: %v", err)
		}
		c.exec(`DELETE FROM plain WHERE id = 2`)
		c.apply(p) // absent again: the plan still applies
		if got := c.snapshot("plain"); !strings.Contains(got, "(2,x,2)") {
			t.Fatalf("plain: %s", got)
		}
	})

	t.Run("plan changes nothing", func(t *testing.T) {
		tx, err := c.src.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		e, err := c.r.Load(ctx, tx, c.find("plain", audit.Delete, `{"id": 2}`))
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.r.Plan(ctx, tx, e)
		if err != nil {
			t.Fatal(err)
		}
		mustRefuse(t, p, CodeChangedSince, "") // restored above
	})

	t.Run("an actor is required", func(t *testing.T) {
		p := c.plan(second)
		if err := c.r.Apply(ctx, c.src, p, auditctx.Context{RequestID: "r"}); err == nil || !strings.Contains(err.Error(), "ActorID") {
			t.Fatalf("apply without an actor: %v", err)
		}
	})
}

// TestGrant: a role outside the application group may not record the
// event, so the restore is refused with what to grant, and changes
// nothing; granted, it restores.
func TestGrant(t *testing.T) {
	c := newCapture(t, `CREATE TABLE plain (id int PRIMARY KEY, v text)`, options{})
	ctx := context.Background()
	role := fmt.Sprintf("restorer_%d", os.Getpid())
	pgtest.Exec(t, c.dsn, `CREATE ROLE `+role+` LOGIN`, `GRANT SELECT, INSERT, UPDATE, DELETE ON plain TO `+role)
	t.Cleanup(func() {
		pgtest.Exec(t, c.dsn, `DROP OWNED BY `+role, `DROP ROLE `+role)
	})
	u, _ := url.Parse(c.dsn)
	u.User = url.User(role)
	conn := pgtest.Connect(t, u.String())

	c.exec(`INSERT INTO plain VALUES (1, 'a')`, `DELETE FROM plain`)
	c.sync()
	id := c.last("public", "plain", audit.Delete)
	e, err := c.r.Load(ctx, c.trail, id)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.r.Plan(ctx, conn, e)
	if err != nil {
		t.Fatal(err)
	}
	mustNotRefuse(t, p)
	err = c.r.Apply(ctx, conn, p, ada)
	if !errors.Is(err, ErrEventNotAllowed) || !strings.Contains(err.Error(), `GRANT "walscribe_app" TO "`+role+`"`) {
		t.Fatalf("apply without the grant: %v", err)
	}
	if got := c.snapshot("plain"); got != "[]" {
		t.Fatalf("plain changed: %s", got)
	}
	pgtest.Exec(t, c.dsn, `GRANT walscribe_app TO `+role)
	if err := c.r.Apply(ctx, conn, p, ada); err != nil {
		t.Fatal(err)
	}
	c.sync()
	var dbUser, actor string
	err = c.trail.QueryRow(ctx, `SELECT db_user, actor FROM audit.entries WHERE action = 'restored' AND (new->>'entry_id')::bigint = $1`, id).Scan(&dbUser, &actor)
	if err != nil {
		t.Fatal(err)
	}
	if dbUser != role || actor != ada.Actor {
		t.Fatalf("event by %s as %s, want %s as %s", dbUser, actor, role, ada.Actor)
	}

	// Inside the caller's transaction the restore is a savepoint: it
	// commits, and its event exists, only with the caller's transaction.
	c.exec(`DELETE FROM plain`)
	c.sync()
	id = c.last("public", "plain", audit.Delete)
	p = c.plan(id)
	tx, err := c.src.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.r.Apply(ctx, tx, p, ada); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	c.sync()
	if got, n := c.snapshot("plain"), c.restoredEvents(id); got != "[]" || n != 0 {
		t.Fatalf("after the caller rolled back: rows %s, %d events", got, n)
	}
}
