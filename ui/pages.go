package ui

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/jackc/pglogrepl"

	"github.com/walscribe/walscribe/auth"
	"github.com/walscribe/walscribe/browse"
	"github.com/walscribe/walscribe/query"
)

// entriesView is a page of entries: the filtered list, a row's history,
// a transaction, a request, an actor's activity.
type entriesView struct {
	Heading string
	Navi    string
	Form    bool   // the filter form is shown
	P       params // the page's filter, as its URL gives it
	Error   string // what is wrong with the filter (nothing is listed)
	Rows    []browse.Entry
	Since   string
	Until   string
	Older   string // the next page's link ("" for none)
	Newest  string // the first page's link, when this is not it
	CSV     string // downloads of the whole filter (auditors)
	JSONL   string
	Related []link // links to the same entries elsewhere
}

func (v entriesView) nav() string { return v.Navi }

// link is a link a page offers.
type link struct{ Text, URL string }

// list is the filtered list of entries, newest first: every filter in
// the URL, the last 7 days by default.
func (u *UI) list(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := only(r.URL.Query(), allNames...); err != nil {
		return err
	}
	p := readParams(r.URL.Query())
	v := entriesView{Heading: "Entries", Navi: "entries", Form: true, P: p}
	if len(p.Actions) == 1 && p.Actions[0] == "alert" {
		v.Heading, v.Navi = "Alerts", "alerts"
	}
	return u.entries(w, r, s, v, "ui.listEntries", "/", listDays)
}

// history is a row's history: the entries of one table and key, its
// deletion and what came before included.
func (u *UI) history(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := only(r.URL.Query(), append([]string{"table", "pk"}, windowNames...)...); err != nil {
		return err
	}
	all := readParams(r.URL.Query())
	if len(all.Tables) != 1 || all.PK == "" {
		return badRequest("A row's history needs its table (table=schema.table) and its key (pk, a JSON object such as {\"id\": 42}).")
	}
	p := params{Tables: all.Tables, PK: all.PK, Since: all.Since, Until: all.Until, Days: all.Days, Limit: all.Limit, Cursor: all.Cursor}
	v := entriesView{Heading: "History of " + p.Tables[0] + " " + p.PK, Navi: "entries", P: p}
	return u.entries(w, r, s, v, "ui.rowHistory", "/history", historyDays)
}

// request is what one request changed.
func (u *UI) request(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := only(r.URL.Query(), append([]string{"request_id"}, windowNames...)...); err != nil {
		return err
	}
	all := readParams(r.URL.Query())
	if all.RequestID == "" {
		return badRequest("Which request? Give its id: request_id=….")
	}
	p := params{RequestID: all.RequestID, Since: all.Since, Until: all.Until, Days: all.Days, Limit: all.Limit, Cursor: all.Cursor}
	v := entriesView{Heading: "Request " + p.RequestID, Navi: "entries", P: p}
	return u.entries(w, r, s, v, "ui.getRequest", "/request", activityDays)
}

// actor is what one actor did.
func (u *UI) actor(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := only(r.URL.Query(), append([]string{"actor_id", "table", "action"}, windowNames...)...); err != nil {
		return err
	}
	all := readParams(r.URL.Query())
	if all.ActorID == "" {
		return badRequest("Which actor? Give their id: actor_id=….")
	}
	p := params{ActorID: all.ActorID, Tables: all.Tables, Actions: all.Actions, Since: all.Since, Until: all.Until, Days: all.Days, Limit: all.Limit, Cursor: all.Cursor}
	v := entriesView{Heading: "Activity of actor " + p.ActorID, Navi: "entries", P: p}
	return u.entries(w, r, s, v, "ui.actorActivity", "/actor", activityDays)
}

// me is what the signed-in token's own actor did.
func (u *UI) me(w http.ResponseWriter, r *http.Request, s *session) error {
	if s.token.ActorID == "" {
		return &httpError{http.StatusNotFound, "This token has no actor id, so it has no activity of its own: create one with walscribe token create --actor-id ID."}
	}
	if err := only(r.URL.Query(), append([]string{"table", "action"}, windowNames...)...); err != nil {
		return err
	}
	all := readParams(r.URL.Query())
	p := params{Tables: all.Tables, Actions: all.Actions, Since: all.Since, Until: all.Until, Days: all.Days, Limit: all.Limit, Cursor: all.Cursor}
	v := entriesView{Heading: "My activity (actor " + s.token.ActorID + ")", Navi: "me", P: p}
	return u.entriesOf(w, r, s, v, "ui.myActivity", "/me", activityDays, func(f *query.Filter) { f.ActorID = s.token.ActorID })
}

func (u *UI) entries(w http.ResponseWriter, r *http.Request, s *session, v entriesView, what, path string, def int) error {
	return u.entriesOf(w, r, s, v, what, path, def, nil)
}

// entriesOf shows a page of the entries v.P selects (narrowed by
// narrow), recording the read first.
func (u *UI) entriesOf(w http.ResponseWriter, r *http.Request, s *session, v entriesView, what, path string, def int, narrow func(*query.Filter)) error {
	f, limit, err := v.P.filter(def, u.cfg.Now())
	if err != nil {
		v.Error = err.Error()
		u.show(w, r, s, http.StatusBadRequest, "entries", v.Heading, v)
		return nil
	}
	if narrow != nil {
		narrow(&f)
	}
	page, err := u.store.List(r.Context(), f, limit)
	if err != nil {
		return err
	}
	if err := u.read(r, s, what, &f, "", len(page.Entries)); err != nil {
		return err
	}
	v.Rows, v.Since, v.Until = page.Entries, stamp(f.Since), stamp(f.Until)
	if page.HasMore {
		v.Older = v.P.link(path, page.Next)
	}
	if f.BeforeID > 0 {
		v.Newest = v.P.link(path, "")
	}
	if path == "/" {
		v.CSV, v.JSONL = v.P.export(f, "csv"), v.P.export(f, "jsonl")
	} else {
		// The same entries in the list, where every filter can be changed.
		lp := v.P
		lp.Cursor, lp.Limit = "", ""
		if narrow != nil {
			lp.ActorID = f.ActorID
		}
		if lp.Days == "" && lp.Since == "" {
			lp.Days = strconv.Itoa(def)
		}
		v.Related = append(v.Related, link{"Filter these in the list", lp.link("/", "")})
	}
	u.show(w, r, s, http.StatusOK, "entries", v.Heading, v)
	return nil
}

// transaction is every entry of one source transaction, by its commit LSN.
func (u *UI) transaction(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := only(r.URL.Query(), "lsn"); err != nil {
		return err
	}
	text := r.URL.Query().Get("lsn")
	lsn, err := pglogrepl.ParseLSN(text)
	if err != nil {
		return badRequest("lsn " + strconv.Quote(text) + ": a commit LSN such as 0/16B3748.")
	}
	entries, err := u.store.Transaction(r.Context(), lsn)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return &httpError{http.StatusNotFound, "No entry has that commit LSN (retention may have removed them)."}
	}
	if err := u.read(r, s, "ui.getTransaction", nil, lsn.String(), len(entries)); err != nil {
		return err
	}
	v := entriesView{Heading: "Transaction " + lsn.String(), Navi: "entries", Rows: entries}
	if x := entries[0].Xid; x != nil {
		v.Related = append(v.Related, link{"Entries of xid " + strconv.FormatInt(*x, 10), "/?" + url.Values{"xid": {strconv.FormatInt(*x, 10)}, "days": {"36500"}}.Encode()})
	}
	u.show(w, r, s, http.StatusOK, "entries", v.Heading, v)
	return nil
}

// entryView is one entry with its images side by side.
type entryView struct {
	E       browse.Entry
	Fields  []browse.Field
	Old     string // the images as JSON text, when they are not objects
	New     string
	Context string
	// Restorable: a delete or an update, and the reader an admin.
	Restorable bool
	// RestoreOff: restores are not configured on this server.
	RestoreOff bool
}

func (u *UI) entry(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return errNotFound
	}
	e, err := u.store.Entry(r.Context(), id)
	if err != nil {
		return err
	}
	if err := u.read(r, s, "ui.getEntry", nil, strconv.FormatInt(id, 10), 1); err != nil {
		return err
	}
	v := entryView{E: e, Fields: e.Fields(), Context: pretty(e.Context)}
	if len(v.Fields) == 0 {
		v.Old, v.New = pretty(e.Old), pretty(e.New)
	}
	if s.token.Role.Allows(auth.Admin) && (e.Action == "delete" || e.Action == "update") {
		v.Restorable, v.RestoreOff = true, u.cfg.Restore == nil
	}
	u.show(w, r, s, http.StatusOK, "entry", "Entry "+strconv.FormatInt(id, 10), v)
	return nil
}

// pretty is JSON text indented ("" for none).
func pretty(doc json.RawMessage) string {
	if len(doc) == 0 {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, doc, "", "  ") != nil {
		return string(doc)
	}
	return b.String()
}
