package auditctx_test

import (
	"os"
	"testing"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// srv is the throwaway PostgreSQL server shared by this package's tests.
var srv *pgtest.Server

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, &srv, pgtest.Options{}))
}

// databaseURL is where the example connects; an application would read it
// from its configuration, e.g. os.Getenv("DATABASE_URL").
func databaseURL() string { return srv.DSN("postgres") }
