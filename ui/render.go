package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"

	"go.uber.org/zap"

	"github.com/walscribe/walscribe/api"
	"github.com/walscribe/walscribe/auth"
	"github.com/walscribe/walscribe/browse"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/query"
)

//go:embed templates/*.html
var templateFS embed.FS

// pageNames are the templates a page is rendered with, each in
// templates/<name>.html, on top of layout.html and partials.html.
var pageNames = []string{"signin", "entries", "entry", "summary", "restore", "error"}

// parseTemplates parses each page with the layout and partials.
func parseTemplates() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs()).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, err
	}
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if pages[name], err = t.ParseFS(templateFS, "templates/"+name+".html"); err != nil {
			return nil, err
		}
	}
	return pages, nil
}

// view is what the layout renders: a page's data with who is signed in.
type view struct {
	Title string
	Nav   string // the navigation item of the page
	User  *user  // nil when nobody is signed in
	CSRF  string
	Data  any
}

// user is the signed-in token as the pages show it.
type user struct {
	Name, Role, ActorID string
	Auditor, Admin      bool
}

// show renders page with data, as answer status: rendered whole first,
// so that a template that fails sends an error page, not half a page.
func (u *UI) show(w http.ResponseWriter, r *http.Request, s *session, status int, page, title string, data any) {
	v := view{Title: title, Nav: page, Data: data}
	if s != nil {
		v.User = &user{Name: s.token.Name, Role: s.token.Role.String(), ActorID: s.token.ActorID,
			Auditor: s.token.Role.Allows(auth.Auditor), Admin: s.token.Role.Allows(auth.Admin)}
		v.CSRF = s.csrf
	}
	if d, ok := data.(interface{ nav() string }); ok {
		v.Nav = d.nav()
	}
	var buf bytes.Buffer
	if err := u.pages[page].ExecuteTemplate(&buf, "layout", v); err != nil {
		u.log.Error("render a page", zap.String("page", page), zap.Error(err))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte("walscribe could not show this page; its log says why.\n"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// httpError is an error the browser is shown: a status and a message
// written for the reader, never an internal error's text.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

var (
	errNotFound          = &httpError{http.StatusNotFound, "There is no such page or entry (retention may have removed it)."}
	errCSRF              = &httpError{http.StatusForbidden, "The form was refused: it did not carry this session's CSRF token. Reload the page and send it again."}
	errCrossOrigin       = &httpError{http.StatusForbidden, "The form was refused: it was sent from another site. Sign in from walscribe's own sign-in page."}
	errTokensUnavailable = &httpError{http.StatusServiceUnavailable, "Tokens cannot be checked now; try again in a moment."}
	errTooMany           = &httpError{http.StatusTooManyRequests, "Too many requests with this token at once, or too fast (api.rate_limit): wait a moment and reload."}
	errUnrecorded        = &httpError{http.StatusServiceUnavailable, "The read could not be recorded in the trail, so nothing is shown. Try again; the server's log says why."}
	errTimeout           = &httpError{http.StatusServiceUnavailable, "The query took longer than the server allows (api.statement_timeout): narrow the filter or the time window."}
)

func forbidden(need auth.Role) *httpError {
	return &httpError{http.StatusForbidden, "This page needs a token of role " + need.String() + " or above."}
}

func badRequest(msg string) *httpError { return &httpError{http.StatusBadRequest, msg} }

// errorView is what the error page shows.
type errorView struct {
	Status  int
	Message string
}

// fail shows err as the error page: an httpError as it is, a timeout or a
// missing entry as such, anything else as a 500 that tells nothing of the
// inside (and is logged).
func (u *UI) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
	case pg.Is(err, "57014"):
		he = errTimeout
	case errors.Is(err, browse.ErrNotFound):
		he = errNotFound
	default:
		if !errors.Is(err, context.Canceled) {
			u.log.Error("answer a request", zap.String("path", r.URL.Path), zap.Error(err))
		}
		he = &httpError{http.StatusInternalServerError, "walscribe could not answer; its log says why."}
	}
	if he.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	u.show(w, r, s, he.status, "error", http.StatusText(he.status), errorView{Status: he.status, Message: he.msg})
}

func (u *UI) notFound(w http.ResponseWriter, r *http.Request) {
	s, _ := u.session(r)
	u.fail(w, r, s, errNotFound)
}

// read records that the signed-in s read rows entries by what (a page),
// selected by f or by id, as the API records its reads; it fails when it
// cannot: nothing of the trail is shown that was not recorded as read.
func (u *UI) read(r *http.Request, s *session, what string, f *query.Filter, id string, rows int) error {
	data := map[string]any{"operation": what, "rows": rows, "token_id": s.token.ID, "role": s.token.Role.String()}
	if f != nil {
		ff := *f
		ff.BeforeID = 0
		data["filter"] = ff
		if f.BeforeID > 0 {
			data["before_id"] = f.BeforeID
		}
	}
	e := api.Event{Action: "read", Target: u.cfg.Schema + ".entries", ObjectID: id, Data: data, Who: api.Who(r, s.token)}
	if err := u.api.Record(r.Context(), e); err != nil {
		u.log.Error("record a read", zap.String("operation", what), zap.Error(err))
		return errUnrecorded
	}
	return nil
}
