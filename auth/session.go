package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"time"
)

// CookieName is the UI's session cookie: it holds the token, HttpOnly and
// SameSite=Strict, so that scripts cannot read it and other sites cannot
// send it.
const CookieName = "walscribe_session"

// SessionCookie is the cookie that signs the browser in with token text
// for maxAge; secure when the UI is served over TLS.
func SessionCookie(text string, maxAge time.Duration, secure bool) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: text, Path: "/", MaxAge: int(maxAge.Seconds()),
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode}
}

// ClearCookie signs the browser out.
func ClearCookie(secure bool) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode}
}

// CSRF is the token a form posted with the session of token text must
// carry: derived from the token's secret, so that a page of another site,
// which cannot read the cookie, cannot make it.
func CSRF(text string) string {
	m := hmac.New(sha256.New, []byte(text))
	m.Write([]byte("walscribe csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF reports whether got is the CSRF token of the session of text.
func CheckCSRF(text, got string) bool {
	return got != "" && hmac.Equal([]byte(CSRF(text)), []byte(got))
}
