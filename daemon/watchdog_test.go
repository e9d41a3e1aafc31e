package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walscribe/walscribe/internal/faultproxy"
)

// TestWatchdogReconnectsAStalledStream: a connection that stays open but
// carries nothing (a half-open network) is noticed and replaced; nothing is
// lost.
func TestWatchdogReconnectsAStalledStream(t *testing.T) {
	saved := stallTimeout
	stallTimeout = 2 * time.Second
	defer func() { stallTimeout = saved }()
	h := newHarness(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	proxy, err := faultproxy.Start(fmt.Sprintf("%s:%d", srv.Host, srv.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	h.cfg.SourceDSN = strings.Replace(h.dsn, fmt.Sprintf(":%d/", srv.Port), fmt.Sprintf(":%d/", proxy.Addr().Port), 1)
	h.start()
	h.exec(`INSERT INTO t VALUES (1)`)
	h.sync()
	proxy.Stall()
	h.exec(`INSERT INTO t VALUES (2)`)
	time.Sleep(2 * stallTimeout) // the watchdog fires; reconnecting stalls too, until the network is back
	proxy.Restore()
	h.exec(`INSERT INTO t VALUES (3)`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 't'`); n != 3 {
		t.Errorf("%d entries, want 3", n)
	}
	h.checkOracle()
}
