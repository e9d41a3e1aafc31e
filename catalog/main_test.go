package catalog

import (
	"os"
	"testing"

	"github.com/walscribe/walscribe/internal/pgtest"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &srv, pgtest.Options{})) }
