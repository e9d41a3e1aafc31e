// Package auditctx tells walscribe who is acting: applications call it to set
// the context that walscribe stamps on the audit entries of their changes.
//
// walscribe reads changes from the write-ahead log, which does not carry
// session state, so the application sets six custom variables and a trigger
// installed by "walscribe setup" passes them into the log. With the default
// prefix they are audit.actor_id, audit.actor, audit.ip, audit.user_agent,
// audit.request_id and audit.context (a JSON object with anything else). This
// package sets all six in one statement and one round trip, with plain
// set_config, so it also works on a database walscribe has not set up yet.
// Empty fields are set to the empty string ("not set"), so nothing from an
// earlier request on the same connection survives.
//
// The context must be set in the transaction that makes the changes. The usual
// shape is a middleware that puts a Context into the request's
// context.Context, and BeginTx wherever the request writes:
//
//	// in the middleware, after authentication
//	ip, _, _ := net.SplitHostPort(r.RemoteAddr) // the address, without the port
//	ctx := auditctx.NewContext(r.Context(), auditctx.Context{
//		ActorID:   user.ID,
//		Actor:     user.Email,
//		IP:        ip,
//		UserAgent: r.UserAgent(),
//		RequestID: r.Header.Get("X-Request-Id"),
//		Extra:     map[string]any{"tenant": user.Tenant},
//	})
//	next.ServeHTTP(w, r.WithContext(ctx))
//
//	// in the handler: a transaction with the context already set
//	tx, err := auditctx.BeginTx(r.Context(), pool, pgx.TxOptions{})
//	if err != nil {
//		return err
//	}
//	defer tx.Rollback(r.Context())
//	// ... the request's writes; walscribe stamps each with the context ...
//	return tx.Commit(r.Context())
//
// In a transaction begun elsewhere, SetLocal(ctx, tx, c) does the same, and
// for database/sql (any driver, e.g. github.com/jackc/pgx/v5/stdlib) there are
// SetLocalSQL and BeginTxSQL. SetSession and SetSessionSQL set the context
// for a whole session instead, for a connection that serves one actor (a
// worker, a script).
//
// Behind PgBouncer in transaction pooling mode use only the transaction-local
// forms (BeginTx, SetLocal, BeginTxSQL, SetLocalSQL): a session-level setting
// stays on the server connection and reaches whichever client uses it next.
// This package's statements are never prepared, whatever the driver's mode.
// The application's own statements are: by default pgx prepares every
// statement that has parameters under a name ("stmtcache_..."), which
// PgBouncer before 1.21, or with max_prepared_statements = 0, cannot follow
// from one server connection to the next; they fail with 'prepared statement
// "stmtcache_..." already exists' (42P05) or '... does not exist' (26000).
// Add default_query_exec_mode=exec to the connection string, which
// pgx.Connect, pgxpool.New and sql.Open("pgx", ...) with
// github.com/jackc/pgx/v5/stdlib all read:
//
//	postgres://app@pgbouncer:6432/app?default_query_exec_mode=exec
//
// or set DefaultQueryExecMode to pgx.QueryExecModeExec in the pgx.ConnConfig
// (pgxpool.Config.ConnConfig; stdlib.OpenDB for database/sql).
// default_query_exec_mode=simple_protocol (pgx.QueryExecModeSimpleProtocol)
// works too.
//
// If walscribe's context.prefix is not "audit", pass the same prefix with
// WithPrefix to every call.
//
// The same can be done in SQL, which is what this package sends:
//
//	SELECT set_config('audit.actor_id', '42', true), set_config('audit.actor', '', true), ...
//
// or, once walscribe's setup has run, SELECT audit.set_context(actor_id => '42', ...).
//
// What is trusted: the actor, address and the rest are what the application
// says; walscribe adds what the database knows by itself (current_user, the
// client's address and application_name).
package auditctx
