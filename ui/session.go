package ui

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/walscribe/walscribe/auth"
)

// session is a signed-in browser: its token, the token's text (the
// cookie) and the CSRF token its forms carry.
type session struct {
	token auth.Token
	text  string
	csrf  string
}

// maxForm bounds a posted form: a token, a CSRF token, a few fields.
const maxForm = 64 << 10

// session is the session of r's cookie, or auth.ErrUnauthenticated.
func (u *UI) session(r *http.Request) (*session, error) {
	c, err := r.Cookie(auth.CookieName)
	if err != nil || c.Value == "" {
		return nil, auth.ErrUnauthenticated
	}
	t, err := u.api.Tokens().Verify(r.Context(), c.Value, u.cfg.Now())
	if err != nil {
		return nil, err
	}
	return &session{token: t, text: c.Value, csrf: auth.CSRF(c.Value)}, nil
}

// handlerFunc answers a request of a signed-in browser; an error is shown
// as the error page (see fail).
type handlerFunc func(w http.ResponseWriter, r *http.Request, s *session) error

// page is h for the signed-in of role need or above: a browser not signed
// in is sent to sign in, and a form posted without the session's CSRF
// token (the field csrf) is refused.
func (u *UI) page(need auth.Role, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := u.session(r)
		if errors.Is(err, auth.ErrUnauthenticated) {
			next := "/"
			if r.Method == http.MethodGet {
				next = r.URL.RequestURI()
			}
			http.Redirect(w, r, "/signin?"+url.Values{"next": {next}}.Encode(), http.StatusSeeOther)
			return
		}
		if err != nil {
			u.log.Error("check a session", zap.Error(err))
			u.fail(w, r, nil, errTokensUnavailable)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil || !auth.CheckCSRF(s.text, r.PostForm.Get("csrf")) {
				u.fail(w, r, s, errCSRF)
				return
			}
		}
		if !s.token.Role.Allows(need) {
			u.fail(w, r, s, forbidden(need))
			return
		}
		// The API's limits hold for the token in the UI too.
		release, ok := u.api.Acquire(s.token)
		if !ok {
			w.Header().Set("Retry-After", "1")
			u.fail(w, r, s, errTooMany)
			return
		}
		defer release()
		if err := h(w, r, s); err != nil {
			u.fail(w, r, s, err)
		}
	})
}

// signInView is what the sign-in page shows.
type signInView struct {
	Next    string
	Error   string
	Current string // the token already signed in, if any
}

func (u *UI) signInPage(w http.ResponseWriter, r *http.Request) {
	v := signInView{Next: localPath(r.URL.Query().Get("next"))}
	if s, err := u.session(r); err == nil {
		v.Current = s.token.Name
	}
	u.show(w, r, nil, http.StatusOK, "signin", "Sign in", v)
}

// signIn exchanges a pasted token for the session cookie. The form comes
// from the sign-in page only: a cross-site post carries an Origin of
// another host (refused), and SameSite=Strict keeps other sites from
// riding an existing session.
func (u *UI) signIn(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		u.fail(w, r, nil, errCrossOrigin)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		u.fail(w, r, nil, &httpError{status: http.StatusBadRequest, msg: "The form could not be read; sign in again."})
		return
	}
	v := signInView{Next: localPath(r.PostForm.Get("next"))}
	text := strings.TrimSpace(r.PostForm.Get("token"))
	now := u.cfg.Now()
	t, err := u.api.Tokens().Verify(r.Context(), text, now)
	if errors.Is(err, auth.ErrUnauthenticated) {
		u.log.Info("refused a sign-in", zap.String("ip", clientIP(r)))
		v.Error = "That token is not valid: it is mistyped, unknown, revoked or expired. Paste a whole token (wst_…); walscribe token create makes one."
		u.show(w, r, nil, http.StatusUnauthorized, "signin", "Sign in", v)
		return
	}
	if err != nil {
		u.log.Error("check a token", zap.Error(err))
		u.fail(w, r, nil, errTokensUnavailable)
		return
	}
	age := u.cfg.SessionMaxAge
	if !t.ExpiresAt.IsZero() {
		age = min(age, t.ExpiresAt.Sub(now))
	}
	http.SetCookie(w, auth.SessionCookie(text, max(age, time.Second), u.cfg.Secure))
	http.Redirect(w, r, v.Next, http.StatusSeeOther)
}

func (u *UI) signOut(w http.ResponseWriter, r *http.Request, s *session) error {
	http.SetCookie(w, auth.ClearCookie(u.cfg.Secure))
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return nil
}

// sameOrigin reports whether r, if it says where it comes from, comes
// from this site: Sec-Fetch-Site (which browsers set and pages cannot)
// when the browser sends it, else Origin against the host r is sent to.
// (With Referrer-Policy no-referrer, browsers send a form's Origin as
// "null": those that also send Sec-Fetch-Site, all current ones, are
// judged by it.)
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o, err := url.Parse(origin)
	return err == nil && (o.Scheme == "http" || o.Scheme == "https") && strings.EqualFold(o.Host, r.Host)
}

// localPath is next if it is a path of this site, else "/": signing in
// never sends the browser elsewhere.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.HasPrefix(next, "/signin") {
		return "/"
	}
	p, err := url.Parse(next)
	if err != nil || p.Scheme != "" || p.Host != "" || strings.ContainsAny(next, "\r\n\\") {
		return "/"
	}
	return next
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
