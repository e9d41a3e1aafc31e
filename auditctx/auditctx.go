package auditctx

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultPrefix is the prefix of the variable names unless WithPrefix says
// otherwise; it matches walscribe's default context.prefix.
const DefaultPrefix = "audit"

// Context is who is acting and from where. An empty field is "not set".
type Context struct {
	// ActorID identifies the user or service acting, e.g. "42" (<prefix>.actor_id).
	ActorID string
	// Actor is a display name, e.g. "alice@example.com" (<prefix>.actor).
	Actor string
	// IP is the client's address without a port, e.g. "203.0.113.7"
	// (<prefix>.ip). walscribe stores it as inet; a value that is not an
	// address is kept in the entry's context under "invalid_ip".
	IP string
	// UserAgent is the client's User-Agent (<prefix>.user_agent).
	UserAgent string
	// RequestID ties the changes of one request together (<prefix>.request_id).
	RequestID string
	// Extra is anything else, e.g. {"tenant": "acme"}. It is sent as a JSON
	// object text (<prefix>.context) and becomes the entry's context. Do not
	// modify the map after handing it to NewContext.
	Extra map[string]any
}

// Option changes how the variables are named.
type Option func(*options)

type options struct {
	prefix string
}

// WithPrefix sets the prefix of the variable names (default DefaultPrefix).
// It must equal context.prefix in walscribe's configuration and be a plain
// identifier: a lowercase letter or underscore, then lowercase letters,
// digits and underscores, at most 63 in all.
func WithPrefix(prefix string) Option {
	return func(o *options) { o.prefix = prefix }
}

// Execer runs a statement with pgx. It is satisfied by pgx.Tx, *pgx.Conn and
// *pgxpool.Conn (and by *pgxpool.Pool, which SetLocal and SetSession reject:
// a pool runs each statement on whichever connection is free). The first
// argument passed is pgx.QueryExecModeExec, so the statement costs one round
// trip and nothing is prepared: a wrapper must hand the arguments to pgx as
// they are.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// SQLExecer runs a statement with database/sql: *sql.Tx or *sql.Conn.
type SQLExecer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// TxBeginner starts a pgx transaction: *pgx.Conn, *pgxpool.Pool, *pgxpool.Conn.
type TxBeginner interface {
	BeginTx(ctx context.Context, txOptions pgx.TxOptions) (pgx.Tx, error)
}

// SQLTxBeginner starts a database/sql transaction: *sql.DB, *sql.Conn.
type SQLTxBeginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

var (
	_ Execer        = pgx.Tx(nil)
	_ Execer        = (*pgx.Conn)(nil)
	_ Execer        = (*pgxpool.Conn)(nil)
	_ SQLExecer     = (*sql.Tx)(nil)
	_ SQLExecer     = (*sql.Conn)(nil)
	_ TxBeginner    = (*pgx.Conn)(nil)
	_ TxBeginner    = (*pgxpool.Pool)(nil)
	_ TxBeginner    = (*pgxpool.Conn)(nil)
	_ SQLTxBeginner = (*sql.DB)(nil)
	_ SQLTxBeginner = (*sql.Conn)(nil)
)

// The statements set all six variables in one round trip. They use only
// PostgreSQL's set_config, so they work whether or not walscribe's setup has
// run in the database. The names are parameters too, though WithPrefix
// already allows nothing but identifiers.
const (
	setLocalSQL = "SELECT set_config($1, $2, true), set_config($3, $4, true), set_config($5, $6, true), " +
		"set_config($7, $8, true), set_config($9, $10, true), set_config($11, $12, true)"
	setSessionSQL = "SELECT set_config($1, $2, false), set_config($3, $4, false), set_config($5, $6, false), " +
		"set_config($7, $8, false), set_config($9, $10, false), set_config($11, $12, false)"
)

// SetLocal sets the context for the rest of the transaction tx, like
// SET LOCAL: it ends with COMMIT or ROLLBACK, and is undone if tx is a
// savepoint (a nested pgx.Tx) that rolls back. Every variable is set, the
// empty ones to the empty string, so nothing set earlier on the connection
// survives. It is one statement and one round trip; bad options or an Extra
// that cannot be encoded as JSON are reported before anything is sent.
//
// tx must be in a transaction: SetLocal refuses a *pgx.Conn or *pgxpool.Conn
// that is idle and a *pgxpool.Pool, where the values would vanish at once.
// SetLocal is the way to go behind PgBouncer in transaction pooling mode.
func SetLocal(ctx context.Context, tx Execer, c Context, opts ...Option) error {
	args, err := arguments(c, opts)
	if err != nil {
		return err
	}
	if err := checkInTx(tx); err != nil {
		return err
	}
	return execPgx(ctx, tx, setLocalSQL, args)
}

// SetSession sets the context until the session ends or it is set again,
// like SET. Use it on a connection that serves one actor for a long time
// (a worker, a migration script), not on a pooled connection that the next
// request will use, and never behind PgBouncer in transaction pooling mode,
// where the values reach whichever client gets the server connection next.
// Inside a transaction that rolls back the values are undone, as with SET.
func SetSession(ctx context.Context, conn Execer, c Context, opts ...Option) error {
	args, err := arguments(c, opts)
	if err != nil {
		return err
	}
	if _, ok := conn.(*pgxpool.Pool); ok {
		return errors.New("auditctx: SetSession on a *pgxpool.Pool would set the context on whichever connection is free, for whoever uses it next: call pool.Acquire and pass the *pgxpool.Conn, or use SetLocal in a transaction")
	}
	return execPgx(ctx, conn, setSessionSQL, args)
}

// SetLocalSQL is SetLocal for database/sql; tx is a *sql.Tx. The statement
// carries its values as literals and has no parameters, so with any driver
// it is one round trip and nothing is prepared, whatever the driver's mode:
// it works behind PgBouncer in transaction pooling mode even where the
// application's own statements need a setting (see the package
// documentation).
func SetLocalSQL(ctx context.Context, tx SQLExecer, c Context, opts ...Option) error {
	args, err := arguments(c, opts)
	if err != nil {
		return err
	}
	if _, ok := tx.(*sql.DB); ok {
		return errors.New("auditctx: SetLocalSQL on a *sql.DB has no effect: each statement runs outside a transaction on whichever connection is free; begin a transaction (or use BeginTxSQL) and pass the *sql.Tx")
	}
	if _, err := tx.ExecContext(ctx, literalStatement(args, true)); err != nil {
		return fmt.Errorf("auditctx: set context: %w", err)
	}
	return nil
}

// SetSessionSQL is SetSession for database/sql; conn is a *sql.Conn (or a
// *sql.Tx). The same cautions apply.
func SetSessionSQL(ctx context.Context, conn SQLExecer, c Context, opts ...Option) error {
	args, err := arguments(c, opts)
	if err != nil {
		return err
	}
	if _, ok := conn.(*sql.DB); ok {
		return errors.New("auditctx: SetSessionSQL on a *sql.DB would set the context on whichever connection is free, for whoever uses it next: call db.Conn and pass the *sql.Conn, or use SetLocalSQL in a transaction")
	}
	if _, err := conn.ExecContext(ctx, literalStatement(args, false)); err != nil {
		return fmt.Errorf("auditctx: set context: %w", err)
	}
	return nil
}

// BeginTx begins a transaction on db with txOptions (pgx.TxOptions{} for the
// server's defaults) and sets in it the Context carried by ctx (see
// NewContext), or clears every variable when ctx carries none. If setting
// fails, the transaction is rolled back and the error returned. Bad options
// are reported before the transaction begins.
func BeginTx(ctx context.Context, db TxBeginner, txOptions pgx.TxOptions, opts ...Option) (pgx.Tx, error) {
	c, _ := FromContext(ctx)
	args, err := arguments(c, opts)
	if err != nil {
		return nil, err
	}
	tx, err := db.BeginTx(ctx, txOptions)
	if err != nil {
		return nil, fmt.Errorf("auditctx: begin transaction: %w", err)
	}
	if err := execPgx(ctx, tx, setLocalSQL, args); err != nil {
		_ = tx.Rollback(ctx) // the error that matters is the one returned
		return nil, err
	}
	return tx, nil
}

// BeginTxSQL is BeginTx for database/sql; db is a *sql.DB or *sql.Conn and
// txOptions may be nil. Like SetLocalSQL, it prepares nothing.
func BeginTxSQL(ctx context.Context, db SQLTxBeginner, txOptions *sql.TxOptions, opts ...Option) (*sql.Tx, error) {
	c, _ := FromContext(ctx)
	args, err := arguments(c, opts)
	if err != nil {
		return nil, err
	}
	tx, err := db.BeginTx(ctx, txOptions)
	if err != nil {
		return nil, fmt.Errorf("auditctx: begin transaction: %w", err)
	}
	if _, err := tx.ExecContext(ctx, literalStatement(args, true)); err != nil {
		_ = tx.Rollback() // the error that matters is the one returned
		return nil, fmt.Errorf("auditctx: set context: %w", err)
	}
	return tx, nil
}

type contextKey struct{}

// NewContext returns a copy of ctx that carries c, for BeginTx, BeginTxSQL
// and FromContext further down the request.
func NewContext(ctx context.Context, c Context) context.Context {
	return context.WithValue(ctx, contextKey{}, c)
}

// FromContext returns the Context that ctx carries, and whether it carries one.
func FromContext(ctx context.Context) (Context, bool) {
	c, ok := ctx.Value(contextKey{}).(Context)
	return c, ok
}

// literalStatement is the statement for database/sql: setLocalSQL (local)
// or setSessionSQL with the twelve arguments written in as literals, so
// that it has no parameters. database/sql drivers send such a statement as
// it is, in one simple-protocol round trip, and prepare nothing, whatever
// their mode: pgx's stdlib driver, by default, prepares and caches every
// statement that has parameters under a name, which PgBouncer before 1.21
// cannot pass between server connections in transaction pooling mode.
func literalStatement(args []any, local bool) string {
	flag := "false"
	if local {
		flag = "true"
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	for i := 0; i+1 < len(args); i += 2 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("set_config(")
		writeLiteral(&b, args[i].(string))
		b.WriteString(", ")
		writeLiteral(&b, args[i+1].(string))
		b.WriteString(", " + flag + ")")
	}
	return b.String()
}

// writeLiteral writes s as an escape string constant, E'...': a quote is
// doubled, a backslash escaped with a backslash, an ASCII control character becomes
// a Unicode escape (\uXXXX, valid in every server encoding below 0x80),
// and everything else is written as UTF-8. The server reads E'...' the same
// way whatever standard_conforming_strings says, and in UTF-8 — the client
// encoding pgx, lib/pq and every Go driver use — no byte of a multi-byte
// character is a quote or a backslash, so no value can end the literal
// early. Characters above 0x7F are not escaped, so that a database whose
// encoding is not UTF8 still takes those it can represent, as it would from
// a bound parameter. s holds no NUL (see clean), which no escape may
// produce.
func writeLiteral(b *strings.Builder, s string) {
	b.WriteString("E'")
	for _, r := range s {
		switch {
		case r == '\'':
			b.WriteString("''") // not \', which backslash_quote = off refuses
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
}

// execPgx sends the statement in pgx's exec mode: an unnamed statement sent
// with its parameters in one round trip, never a prepare first, so the call
// costs the same on a fresh connection and works behind PgBouncer.
func execPgx(ctx context.Context, e Execer, sql string, args []any) error {
	withMode := make([]any, 0, len(args)+1)
	withMode = append(withMode, pgx.QueryExecModeExec)
	withMode = append(withMode, args...)
	if _, err := e.Exec(ctx, sql, withMode...); err != nil {
		return fmt.Errorf("auditctx: set context: %w", err)
	}
	return nil
}

// checkInTx refuses connections that are known not to be in a transaction,
// where set_config(..., true) would be undone as soon as it returned.
func checkInTx(e Execer) error {
	const hint = "auditctx: SetLocal outside a transaction has no effect: the values vanish when the statement ends; "
	var pc *pgconn.PgConn
	switch v := e.(type) {
	case *pgxpool.Pool:
		return errors.New(hint + "begin a transaction (pool.Begin, or BeginTx) and pass the pgx.Tx")
	case interface{ Conn() *pgx.Conn }: // pgx.Tx, *pgxpool.Conn
		if conn := v.Conn(); conn != nil {
			pc = conn.PgConn()
		}
	case interface{ PgConn() *pgconn.PgConn }: // *pgx.Conn
		pc = v.PgConn()
	}
	if pc != nil && pc.TxStatus() == 'I' {
		return errors.New(hint + "begin a transaction (conn.Begin, or BeginTx) and pass the pgx.Tx, or use SetSession")
	}
	return nil
}

// arguments validates the options and returns the statement's twelve
// parameters: name, value, name, value, ...
func arguments(c Context, opts []Option) ([]any, error) {
	o := options{prefix: DefaultPrefix}
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkPrefix(o.prefix); err != nil {
		return nil, err
	}
	extra, err := encodeExtra(c.Extra)
	if err != nil {
		return nil, err
	}
	p := o.prefix + "."
	return []any{
		p + "actor_id", clean(c.ActorID),
		p + "actor", clean(c.Actor),
		p + "ip", clean(c.IP),
		p + "user_agent", clean(c.UserAgent),
		p + "request_id", clean(c.RequestID),
		p + "context", extra,
	}, nil
}

func checkPrefix(p string) error {
	if p == "" {
		return errors.New(`auditctx: the prefix is empty: use the context.prefix of walscribe's configuration, such as "audit", or leave WithPrefix out`)
	}
	ok := len(p) <= 63
	for i := 0; ok && i < len(p); i++ {
		c := p[i]
		ok = c >= 'a' && c <= 'z' || c == '_' || i > 0 && c >= '0' && c <= '9'
	}
	if !ok {
		return fmt.Errorf("auditctx: prefix %q is not a plain identifier: use a lowercase letter or underscore, then lowercase letters, digits and underscores, at most 63 in all, as in walscribe's context.prefix (default %q)", p, DefaultPrefix)
	}
	return nil
}

// encodeExtra renders Extra as a JSON object text, or "" when it is empty.
func encodeExtra(extra map[string]any) (string, error) {
	if len(extra) == 0 {
		return "", nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(extra); err != nil {
		return "", fmt.Errorf("auditctx: Context.Extra cannot be encoded as JSON: %w; keep to strings, numbers, booleans, nil, slices and maps with string keys", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// clean makes s storable as PostgreSQL text, which holds neither NUL bytes nor
// invalid UTF-8: each is replaced by U+FFFD, so that a strange User-Agent
// never fails a request. Valid text is returned unchanged.
func clean(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
