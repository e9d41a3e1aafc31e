package ui

import (
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/walscribe/walscribe/browse"
)

// funcs are the templates' helpers. Each returns plain text or a URL of
// this site: html/template escapes what they return.
func funcs() template.FuncMap {
	return template.FuncMap{
		"stamp":       stamp,
		"str":         str,
		"actionClass": actionClass,
		"note":        note,
		"entryURL":    entryURL,
		"historyURL":  historyURL,
		"txURL":       txURL,
		"actorURL":    actorURL,
		"requestURL":  requestURL,
		"statusText":  http.StatusText,
		"join":        func(s []string) string { return strings.Join(s, ", ") },
		"jsonText":    func(doc json.RawMessage) string { return string(doc) },
		"table":       func(e browse.Entry) string { return e.Schema + "." + e.Table },
	}
}

// stamp is a time as pages show it: UTC, to the second.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// actionClass is the CSS class of an action's colour: one of a fixed set,
// never the action's own text.
func actionClass(a string) string {
	switch a {
	case "insert", "update", "delete", "truncate", "alert":
		return "act-" + a
	case "gap", "pruned", "rules":
		return "act-system"
	}
	return "act-event"
}

// note is a line about an entry for lists: an update's changed columns,
// an alert's description.
func note(e browse.Entry) string {
	switch e.Action {
	case "update":
		if len(e.Changed) > 0 {
			return "changed " + strings.Join(e.Changed, ", ")
		}
	case "alert":
		var a struct {
			Watch       string `json:"watch"`
			Description string `json:"description"`
		}
		if json.Unmarshal(e.New, &a) == nil {
			return cut(strings.TrimSpace(a.Watch+": "+a.Description), 200)
		}
	}
	return ""
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func entryURL(id int64) string { return "/entries/" + strconv.FormatInt(id, 10) }

// historyURL is the history of the row of e ("" when it has no key).
func historyURL(e browse.Entry) string {
	if len(e.PK) == 0 || string(e.PK) == "null" {
		return ""
	}
	return "/history?" + url.Values{"table": {e.Schema + "." + e.Table}, "pk": {string(e.PK)}}.Encode()
}

func txURL(lsn string) string { return "/transaction?" + url.Values{"lsn": {lsn}}.Encode() }

func actorURL(id *string) string {
	if id == nil || *id == "" {
		return ""
	}
	return "/actor?" + url.Values{"actor_id": {*id}}.Encode()
}

func requestURL(id *string) string {
	if id == nil || *id == "" {
		return ""
	}
	return "/request?" + url.Values{"request_id": {*id}}.Encode()
}
