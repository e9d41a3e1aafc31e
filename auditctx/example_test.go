package auditctx_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walscribe/walscribe/auditctx"
)

// withAudit is middleware that puts who is acting, and from where, into each
// request's context. It belongs after authentication; here the user comes from
// headers that a trusted proxy sets.
func withAudit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			ip = r.RemoteAddr
		}
		ctx := auditctx.NewContext(r.Context(), auditctx.Context{
			ActorID:   r.Header.Get("X-User-Id"),
			Actor:     r.Header.Get("X-User-Email"),
			IP:        ip,
			UserAgent: r.UserAgent(),
			RequestID: r.Header.Get("X-Request-Id"),
			Extra:     map[string]any{"route": r.Method + " " + r.URL.Path},
		})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// payInvoice writes in a transaction that carries the request's audit context.
func payInvoice(pool *pgxpool.Pool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		tx, err := auditctx.BeginTx(ctx, pool, pgx.TxOptions{})
		if err != nil {
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		defer tx.Rollback(ctx)

		// The request's writes go here, e.g.
		//   UPDATE invoices SET paid_at = now() WHERE id = $1
		// and walscribe records them with the context. This example shows
		// what the transaction carries instead.
		var actorID, ip, extra string
		err = tx.QueryRow(ctx, `SELECT current_setting('audit.actor_id'),
			current_setting('audit.ip'), current_setting('audit.context')`).Scan(&actorID, &ip, &extra)
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			http.Error(w, "could not pay the invoice", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "actor_id=%s ip=%s context=%s\n", actorID, ip, extra)
	})
}

func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, databaseURL())
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer pool.Close()

	handler := withAudit(payInvoice(pool))

	req := httptest.NewRequest(http.MethodPost, "/invoices/17/pay", nil)
	req.RemoteAddr = "203.0.113.7:52100"
	req.Header.Set("X-User-Id", "42")
	req.Header.Set("X-Request-Id", "req-1")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Print(rec.Body.String())
	// Output:
	// actor_id=42 ip=203.0.113.7 context={"route":"POST /invoices/17/pay"}
}
