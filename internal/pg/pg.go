// Package pg is how walscribe talks to PostgreSQL: it opens connections —
// regular and replication — with a connect timeout, an application_name and
// TCP keepalives, and it classifies errors (retry, fatal, data) by SQLSTATE
// class and by what broke. Every package that connects goes through it.
package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ConnectTimeout bounds connecting when the DSN sets no connect_timeout: a
// network that swallows packets must not hang a reconnect loop.
const ConnectTimeout = 10 * time.Second

// keepAlive finds a peer that vanished (a failover, a cable pulled) within
// about a minute instead of the kernel's two hours.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}

// Names walscribe's connections go by in pg_stat_activity, unless the DSN
// sets application_name.
const (
	AppDaemon = "walscribe"      // the replication connection
	AppSink   = "walscribe sink" // the sink's writer
	AppTool   = "walscribe tool" // catalog lookups, setup, status, slot reads
	AppAPI    = "walscribe api"  // the API's reads and events
)

// SearchPath is the search_path of every walscribe connection, whatever
// the DSN says. walscribe names its own objects with their schema; names it
// leaves unqualified (functions, operators, types) must be PostgreSQL's, not
// objects some role created in public, which would otherwise run with the
// rights of the daemon, of setup's superuser, or of the trail's owner.
const SearchPath = "pg_catalog, pg_temp"

// AdvisoryClass is the first key of walscribe's advisory locks, taken as
// pg_advisory_xact_lock(AdvisoryClass, hashtext(name)): the two-key form
// never meets the one-key (bigint) locks applications take, and this class
// ("WALS" in ASCII) keeps walscribe's apart from other two-key users.
const AdvisoryClass = 0x57414c53

// AdvisoryLock is the SQL that takes walscribe's transaction-level advisory
// lock for the text expression name.
func AdvisoryLock(name string) string {
	return fmt.Sprintf("pg_advisory_xact_lock(%d, hashtext(%s))", AdvisoryClass, name)
}

// ParseConfig parses dsn and applies walscribe's connection defaults:
// connect timeout, application_name appName (unless the DSN names one), TCP
// keepalives and SearchPath.
func ParseConfig(dsn, appName string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	configure(&cfg.Config, appName)
	return cfg, nil
}

func configure(cfg *pgconn.Config, appName string) {
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = ConnectTimeout
	}
	if cfg.RuntimeParams["application_name"] == "" && appName != "" {
		cfg.RuntimeParams["application_name"] = appName
	}
	cfg.RuntimeParams["search_path"] = SearchPath
	// Texts in UTF-8 whatever the database's encoding: the integrity log
	// hashes them as they arrive.
	cfg.RuntimeParams["client_encoding"] = "UTF8"
	d := &net.Dialer{KeepAliveConfig: keepAlive}
	cfg.DialFunc = d.DialContext
}

// Connect opens a regular connection to dsn.
func Connect(ctx context.Context, dsn, appName string) (*pgx.Conn, error) {
	cfg, err := ParseConfig(dsn, appName)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// Pool opens a pool of at most size connections to dsn, each with
// walscribe's connection defaults and the session settings params (such as
// statement_timeout). It connects lazily: Ping to check.
func Pool(ctx context.Context, dsn, appName string, size int32, params map[string]string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	configure(&cfg.ConnConfig.Config, appName)
	for k, v := range params {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	cfg.MaxConns = size
	cfg.MinConns = 0
	return pgxpool.NewWithConfig(ctx, cfg)
}

// ConnectReplication opens a logical replication connection (replication =
// database) to dsn, with params set for the walsender session.
func ConnectReplication(ctx context.Context, dsn, appName string, params map[string]string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	configure(cfg, appName)
	cfg.RuntimeParams["replication"] = "database"
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	return pgconn.ConnectConfig(ctx, cfg)
}

// Class says what to do about an error.
type Class int

const (
	// None: no error.
	None Class = iota
	// Retry: the connection broke, the server is starting, stopping or out
	// of resources, a lock or serialization conflict, a timeout. Retrying
	// on a new connection may succeed.
	Retry
	// Data: the values sent were refused (a data exception, a constraint,
	// a value too large). Retrying the same values fails the same way.
	Data
	// Fatal: everything else — a missing object, missing privileges, a
	// failed login, a bug. Someone has to act.
	Fatal
)

func (c Class) String() string {
	switch c {
	case None:
		return "none"
	case Retry:
		return "retry"
	case Data:
		return "data"
	}
	return "fatal"
}

// Classify says what kind of error err is.
func Classify(err error) Class {
	if err == nil {
		return None
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code := pgErr.Code
		switch {
		case code == pgerrcode.DatabaseDropped:
			return Fatal
		case pgerrcode.IsConnectionException(code), pgerrcode.IsTransactionRollback(code),
			pgerrcode.IsInsufficientResources(code), pgerrcode.IsOperatorIntervention(code),
			pgerrcode.IsSystemError(code), code == pgerrcode.LockNotAvailable,
			// A server that became a standby (a failover under a DNS name
			// or virtual IP): the primary is soon reachable again.
			code == pgerrcode.ReadOnlySQLTransaction:
			return Retry
		case pgerrcode.IsDataException(code), pgerrcode.IsIntegrityConstraintViolation(code),
			pgerrcode.IsProgramLimitExceeded(code):
			return Data
		}
		return Fatal
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The caller's own deadline, or a shutdown: a retry loop checks its
		// context and knows which.
		return Retry
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return Retry
	}
	// The network: refused, reset, unreachable, a name that does not
	// resolve yet. A connection attempt that failed for another reason —
	// TLS refused or not verified, no password to give — fails the same way
	// next time.
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return Retry
	}
	return Fatal
}

// Retryable reports whether retrying err on a new connection may succeed.
func Retryable(err error) bool { return Classify(err) == Retry }

// SQLState returns the SQLSTATE of err, or "".
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// ObjectInUse reports SQLSTATE 55006: another process uses the object
// (for a replication slot: another consumer streams it).
func ObjectInUse(err error) bool { return SQLState(err) == pgerrcode.ObjectInUse }

// Is reports whether err carries SQLSTATE code (a pgerrcode constant).
func Is(err error, code string) bool { return SQLState(err) == code }
