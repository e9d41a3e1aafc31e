package ui

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chromium is the browser the tests drive: Debian's chromium, or one on
// PATH ("" for none).
func chromium() string {
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifacts is where a test saves its screenshots: $WALSCRIBE_ARTIFACTS/ui
// when set, else a temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if root := os.Getenv("WALSCRIBE_ARTIFACTS"); root != "" {
		dir = filepath.Join(root, "ui")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// cspWatch keeps, in the tab's session storage, every Content-Security-
// Policy violation of its pages; DevTools runs it before a page's own
// scripts, whatever the policy.
const cspWatch = `document.addEventListener('securitypolicyviolation', e => {
	sessionStorage.setItem('csp', (sessionStorage.getItem('csp') || '') + e.violatedDirective + ' ' + e.blockedURI + '\n');
});`

// TestBrowser drives Chromium through the UI as an admin: sign in, the
// list, the filter form (filled and sent), an entry, its row's history,
// a restore's dry run and its Apply. A stored <script> is shown as text
// and never runs (no dialog opens), htmx runs under the CSP with no
// violation, and the filter form works with JavaScript off too. It saves
// a screenshot of each step.
func TestBrowser(t *testing.T) {
	exe := chromium()
	if exe == "" {
		if os.Getenv("WALSCRIBE_REQUIRE_BROWSER") != "" {
			t.Fatal("chromium is not installed (apt-get install chromium), and WALSCRIBE_REQUIRE_BROWSER says the browser tests must run")
		}
		t.Skip("chromium is not installed (apt-get install chromium): the browser tests need /usr/bin/chromium")
	}
	e := newEnv(t, Config{}, false)
	dir := artifacts(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1400, 1000))
	allocCtx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	// The first run starts the browser: no timeout on it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	var dialogs atomic.Int32
	var lastDialog atomic.Value
	events := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			dialogs.Add(1)
			lastDialog.Store(ev.Message)
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspWatch}); err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()

	step := 0
	save := func(name string) error {
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		if err != nil {
			return fmt.Errorf("screenshot %s: %w", name, err)
		}
		step++
		return os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d-%s.png", step, name)), png, 0o644)
	}
	shot := func(name string) {
		t.Helper()
		if err := save(name); err != nil {
			t.Fatal(err)
		}
	}
	// failed saves what the page shows when a step fails, if it can.
	failed := func(what string) {
		if err := save("failed-" + strings.ReplaceAll(what, " ", "-")); err != nil {
			t.Log(err)
		}
		if loc, err := chromedp.Run(tctx, chromedp.Location()); err == nil {
			t.Logf("the page: %s", loc)
		}
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tctx, steps...); err != nil {
			failed(what)
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(tctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	// wait waits until js is true on the page. A click on a link htmx has
	// not yet boosted loads a new page: evaluating fails while it loads,
	// and is tried again.
	wait := func(what, js string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ok, err := chromedp.Run(tctx, chromedp.Evaluate[bool](js))
			if err == nil && ok {
				return
			}
			if time.Now().After(deadline) || tctx.Err() != nil {
				failed(what)
				t.Fatalf("wait for %s: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Sign in: the UI sends the browser there first.
	do("open the UI", chromedp.Navigate(e.http.URL+"/?days=30"), chromedp.WaitVisible(chromedp.CSS("#token")))
	shot("sign-in")
	do("sign in", chromedp.SendKeys(chromedp.CSS("#token"), e.tokens["admin"]), chromedp.Click(chromedp.CSS("#signin-submit")),
		chromedp.WaitVisible(chromedp.CSS("#entries tbody tr.entry")))
	if loc, _ := chromedp.Run(tctx, chromedp.Location()); !strings.HasSuffix(loc, "/?days=30") {
		t.Errorf("after signing in at %s, want the page asked for", loc)
	}
	if v, err := chromedp.Run(tctx, chromedp.Evaluate[string](`typeof htmx === 'object' ? htmx.version : 'none'`)); err != nil || v != "2.0.11" {
		t.Errorf("htmx: %q %v", v, err)
	}
	shot("list")

	// Filter: fill the form and send it (htmx boosts it).
	do("fill the filter form",
		chromedp.SendKeys(chromedp.CSS("#f-actor_id"), hostile),
		chromedp.Click(chromedp.CSS(`#filter input[name=action][value=update]`)),
		chromedp.Click(chromedp.CSS("#apply-filter")))
	wait("the filtered list", `location.search.includes('actor_id=') && document.querySelectorAll('#entries tr.entry').length > 0 &&
		[...document.querySelectorAll('#entries tr.entry')].every(r => r.classList.contains('act-update'))`)
	if got := text(`#entries tr.entry td.actor a.actor-id`); got != hostile {
		t.Errorf("actor cell %q, want the literal %q", got, hostile)
	}
	if got, _ := chromedp.Run(tctx, chromedp.Value(chromedp.CSS("#f-actor_id"))); got != hostile {
		t.Errorf("the form's actor id %q", got)
	}
	shot("filtered")

	// An entry: the images side by side, changes marked.
	do("open an entry", chromedp.Click(chromedp.CSS(`#entries tr.entry td.id a`)))
	wait("the entry", `location.pathname.startsWith('/entries/') && document.querySelector('#entry-detail') !== null`)
	if got := text("#meta-actor_id"); got != hostile {
		t.Errorf("actor id %q, want the literal %q", got, hostile)
	}
	if got := text("#meta-actor"); got != "name of "+hostile {
		t.Errorf("actor %q, want the literal %q", got, "name of "+hostile)
	}
	if got := text("#meta-user_agent"); !strings.Contains(got, hostile+" <b>") {
		t.Errorf("user agent %q", got)
	}
	if n, _ := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll('#images tr.changed').length`)); n == 0 {
		t.Error("no changed field is marked")
	}
	if n, _ := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll('main script, main img').length`)); n != 0 {
		t.Errorf("%d script or img elements in the page's content", n)
	}
	shot("entry")

	// Its row's history.
	do("open the row's history", chromedp.Click(chromedp.CSS("#link-history")))
	wait("the history", `location.pathname === '/history' && document.querySelectorAll('#entries tr.entry').length > 0`)
	shot("history")

	// A restore's dry run, then Apply.
	do("open an update or delete", chromedp.Click(chromedp.CSS(`#entries tr.act-update td.id a, #entries tr.act-delete td.id a`)))
	wait("the entry", `document.querySelector('#link-restore') !== null`)
	do("open the dry run", chromedp.Click(chromedp.CSS("#link-restore")))
	wait("the dry run", `location.pathname.endsWith('/restore') && document.querySelector('#restore-plan') !== null`)
	if got := text("#restore-sql"); !strings.Contains(got, "'"+hostile+"'") {
		t.Errorf("SQL %q", got)
	}
	shot("restore-dry-run")
	do("apply", chromedp.Click(chromedp.CSS("#apply-restore")))
	wait("the restore", `document.querySelector('#restore-result') !== null`)
	shot("restore-applied")
	if calls := e.restore.calls(); len(calls) != 1 || calls[0].ActorID != "42" || !strings.Contains(calls[0].UserAgent, "Chrome") {
		t.Errorf("restores applied: %+v", calls)
	}

	// A filter that is wrong says why, with JavaScript too (htmx swaps a
	// 400's page like any other).
	do("open the list", chromedp.Click(chromedp.CSS(`header nav a[href="/"]`)))
	wait("the list", `location.pathname === '/' && document.querySelector('#f-ip') !== null && document.querySelector('#restore-result') === null`)
	do("send a wrong filter", chromedp.SendKeys(chromedp.CSS(`#filter input[name=ip]`), "nope"), chromedp.Click(chromedp.CSS("#apply-filter")))
	wait("the filter's error", `(document.querySelector('main p.error') || {}).textContent === 'ip "nope": an address (10.0.0.7) or a network (10.0.0.0/8)'`)
	shot("wrong-filter")

	// The summary, through the navigation: its chart is the server's SVG.
	do("open the summary", chromedp.Click(chromedp.CSS(`header nav a[href="/summary"]`)))
	wait("the summary", `location.pathname === '/summary' && document.querySelectorAll('#chart rect.entries').length >= 30`)
	shot("summary")

	csp, err := chromedp.Run(tctx, chromedp.Evaluate[string](`sessionStorage.getItem('csp') || ''`))
	if err != nil || csp != "" {
		t.Errorf("CSP violations: %q %v", csp, err)
	}
	if n := dialogs.Load(); n != 0 {
		t.Errorf("%d dialogs opened (the last: %v): a stored script ran", n, lastDialog.Load())
	}

	// Without JavaScript, in a tab of its own (same cookie): the filter
	// form is a plain GET.
	nojs, cancel := chromedp.NewContext(ctx)
	defer cancel()
	if _, err := chromedp.Call(nojs, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	nctx, ncancel := context.WithTimeout(nojs, 15*time.Second)
	defer ncancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(e.http.URL+"/?days=30"), chromedp.WaitReady(chromedp.CSS("#filter")),
		chromedp.SendKeys(chromedp.CSS("#f-actor_id"), hostile),
		chromedp.Click(chromedp.CSS(`#filter input[name=action][value=delete]`))); err != nil {
		t.Fatalf("fill the filter without JavaScript: %v", err)
	}
	// Sending the form loads a new page (nothing boosts it).
	if _, err := chromedp.Run(nctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS("#apply-filter")))); err != nil {
		t.Fatalf("send the filter without JavaScript: %v", err)
	}
	loc, _ := chromedp.Run(nctx, chromedp.Location())
	if !strings.Contains(loc, "action=delete") || !strings.Contains(loc, "actor_id=%3Cscript%3E") {
		t.Errorf("without JavaScript at %s", loc)
	}
	if got, err := chromedp.Run(nctx, chromedp.TextContent(chromedp.CSS(`#entries tr.entry td.actor a.actor-id`))); err != nil || got != hostile {
		t.Errorf("without JavaScript, actor cell %q %v", got, err)
	}
	png, err := chromedp.Run(nctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d-nojs-filtered.png", step+1)), png, 0o644)
	}
	if err != nil {
		t.Error(err)
	}
}
