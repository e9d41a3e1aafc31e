package api

import (
	"encoding/json"
	"errors"
	"net/http"
)

// problem is an error the client gets as an RFC 9457 problem document.
type problem struct {
	status int
	title  string
	detail string
}

func (p *problem) Error() string { return p.title + ": " + p.detail }

func newProblem(status int, detail string) *problem {
	return &problem{status: status, title: http.StatusText(status), detail: detail}
}

func badRequest(err error) *problem { return newProblem(http.StatusBadRequest, err.Error()) }

var (
	errUnauthenticated = &problem{status: http.StatusUnauthorized, title: "Unauthorized",
		detail: "a valid token is required: send Authorization: Bearer <token> (walscribe token create makes one)"}
	errNotFound = newProblem(http.StatusNotFound, "no such entry (or retention has removed it)")
)

func forbidden(need string) *problem {
	return newProblem(http.StatusForbidden, "this needs a token of role "+need+" or above")
}

// writeProblem writes p as application/problem+json.
func writeProblem(w http.ResponseWriter, r *http.Request, p *problem) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if p.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="walscribe"`)
	}
	w.WriteHeader(p.status)
	json.NewEncoder(w).Encode(Problem{Type: "about:blank", Title: p.title, Status: p.status, Detail: &p.detail, Instance: ptr(r.URL.Path)})
}

// asProblem is err as the client may see it: a problem as it is, anything
// else a 500 that tells nothing of the inside (logged by the caller).
func asProblem(err error) (*problem, bool) {
	var p *problem
	if errors.As(err, &p) {
		return p, true
	}
	return newProblem(http.StatusInternalServerError, "walscribe could not answer; its log says why"), false
}

func ptr[T any](v T) *T { return &v }
