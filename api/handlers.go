package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walscribe/walscribe/auth"
	"github.com/walscribe/walscribe/browse"
	"github.com/walscribe/walscribe/export"
	"github.com/walscribe/walscribe/internal/pg"
	"github.com/walscribe/walscribe/query"
)

var _ StrictServerInterface = (*Server)(nil)

// Default windows, in days, when a request gives neither since nor days.
const (
	listDays     = 7
	activityDays = 30
	historyDays  = 36500 // a row's whole history
	summaryDays  = 30
)

// filterParams are the filter parameters an operation may take.
type filterParams struct {
	tables, actions                                    []string
	actorID, actor, requestID, dbUser, ip, pk, changed *string
	xid                                                *int64
	since, until                                       *time.Time
	days                                               *int
	cursor                                             *string
}

// filter is the query of p, bounded in time (the last def days when p
// gives no window).
func (s *Server) filter(p filterParams, def int) (query.Filter, error) {
	if p.days != nil && p.since != nil {
		return query.Filter{}, badRequest(errors.New("give days or since, not both"))
	}
	var since, until time.Time
	days := def
	if p.since != nil {
		since = *p.since
	}
	if p.until != nil {
		until = *p.until
	}
	if p.days != nil {
		days = *p.days
	}
	f := browse.Window(since, until, days, def, s.cfg.Now())
	f.Tables, f.Actions = p.tables, p.actions
	for _, v := range []struct {
		dst *string
		src *string
	}{{&f.ActorID, p.actorID}, {&f.Actor, p.actor}, {&f.RequestID, p.requestID}, {&f.DBUser, p.dbUser}, {&f.IP, p.ip}, {&f.PK, p.pk}, {&f.Changed, p.changed}} {
		if v.src != nil {
			*v.dst = *v.src
		}
	}
	if p.xid != nil {
		f.Xid = *p.xid
	}
	if p.cursor != nil {
		id, err := browse.ParseCursor(*p.cursor)
		if err != nil {
			return f, badRequest(err)
		}
		f.BeforeID = id
	}
	if err := f.Check(); err != nil {
		return f, badRequest(err)
	}
	return f, nil
}

// read records that the caller read rows entries of what (an operation),
// selected by f or by id, and fails when it cannot: nothing of the trail
// is shown that was not recorded as read.
func (s *Server) read(ctx context.Context, what string, f *query.Filter, id string, rows int) error {
	sess := sessionOf(ctx)
	data := map[string]any{"operation": what, "rows": rows, "token_id": sess.token.ID, "role": sess.token.Role.String()}
	if f != nil {
		ff := *f
		ff.BeforeID = 0
		data["filter"] = ff
		if f.BeforeID > 0 {
			data["before_id"] = f.BeforeID
		}
	}
	if err := s.events.Log(ctx, Event{Action: "read", Target: s.cfg.Schema + ".entries", ObjectID: id, Data: data, Who: sess.caller}); err != nil {
		s.log.Sugar().Errorw("record a read", "operation", what, "error", err)
		return newProblem(http.StatusServiceUnavailable, "the read could not be recorded in the trail, so nothing is shown; try again (the server's log says why)")
	}
	return nil
}

func (s *Server) page(ctx context.Context, what string, f query.Filter, limit *int, list func(query.Filter, int) (browse.Page, error)) (EntryPage, error) {
	n := 0
	if limit != nil {
		n = *limit
	}
	p, err := list(f, n)
	if err != nil {
		return EntryPage{}, s.classify(err)
	}
	if err := s.read(ctx, what, &f, "", len(p.Entries)); err != nil {
		return EntryPage{}, err
	}
	out := EntryPage{Data: p.Entries, HasMore: p.HasMore}
	if out.Data == nil {
		out.Data = []Entry{}
	}
	if p.HasMore {
		out.NextCursor = &p.Next
	}
	return out, nil
}

// classify turns the errors of a read into problems: a query the
// database gave up on is the client's to narrow.
func (s *Server) classify(err error) error {
	switch {
	case pg.Is(err, "57014"):
		return newProblem(http.StatusServiceUnavailable, "the query took longer than the server allows (api.statement_timeout): narrow the filter or the time window")
	case errors.Is(err, browse.ErrNotFound):
		return errNotFound
	case pg.Is(err, "55P03"):
		return newProblem(http.StatusConflict, "the row is locked by another transaction; try again")
	}
	return err
}

func (s *Server) ListEntries(ctx context.Context, req ListEntriesRequestObject) (ListEntriesResponseObject, error) {
	p := req.Params
	f, err := s.filter(filterParams{tables: deref(p.Table), actions: deref(p.Action), actorID: p.ActorId, actor: p.Actor, requestID: p.RequestId,
		dbUser: p.DbUser, ip: p.Ip, pk: p.Pk, changed: p.Changed, xid: p.Xid, since: p.Since, until: p.Until, days: p.Days, cursor: p.Cursor}, listDays)
	if err != nil {
		return nil, err
	}
	page, err := s.page(ctx, "listEntries", f, p.Limit, func(f query.Filter, n int) (browse.Page, error) { return s.store.List(ctx, f, n) })
	if err != nil {
		return nil, err
	}
	return ListEntries200JSONResponse{EntryPageJSONResponse(page)}, nil
}

func (s *Server) GetEntry(ctx context.Context, req GetEntryRequestObject) (GetEntryResponseObject, error) {
	e, err := s.store.Entry(ctx, req.Id)
	if err != nil {
		return nil, s.classify(err)
	}
	if err := s.read(ctx, "getEntry", nil, fmt.Sprint(req.Id), 1); err != nil {
		return nil, err
	}
	return GetEntry200JSONResponse(e), nil
}

func (s *Server) RowHistory(ctx context.Context, req RowHistoryRequestObject) (RowHistoryResponseObject, error) {
	p := req.Params
	f, err := s.filter(filterParams{tables: []string{p.Table}, pk: &p.Pk, since: p.Since, until: p.Until, days: p.Days, cursor: p.Cursor}, historyDays)
	if err != nil {
		return nil, err
	}
	page, err := s.page(ctx, "rowHistory", f, p.Limit, func(f query.Filter, n int) (browse.Page, error) { return s.store.List(ctx, f, n) })
	if err != nil {
		return nil, err
	}
	return RowHistory200JSONResponse{EntryPageJSONResponse(page)}, nil
}

func (s *Server) GetTransaction(ctx context.Context, req GetTransactionRequestObject) (GetTransactionResponseObject, error) {
	lsn, err := pglogrepl.ParseLSN(req.Params.Lsn)
	if err != nil {
		return nil, badRequest(fmt.Errorf("lsn %q: a commit LSN such as 0/16B3748", req.Params.Lsn))
	}
	entries, err := s.store.Transaction(ctx, lsn)
	if err != nil {
		return nil, s.classify(err)
	}
	if len(entries) == 0 {
		return nil, newProblem(http.StatusNotFound, "no entry has that commit LSN")
	}
	if err := s.read(ctx, "getTransaction", nil, lsn.String(), len(entries)); err != nil {
		return nil, err
	}
	return GetTransaction200JSONResponse(EntryList{Data: entries}), nil
}

func (s *Server) GetRequest(ctx context.Context, req GetRequestRequestObject) (GetRequestResponseObject, error) {
	p := req.Params
	f, err := s.filter(filterParams{requestID: &req.RequestId, since: p.Since, until: p.Until, days: p.Days, cursor: p.Cursor}, activityDays)
	if err != nil {
		return nil, err
	}
	page, err := s.page(ctx, "getRequest", f, p.Limit, func(f query.Filter, n int) (browse.Page, error) { return s.store.List(ctx, f, n) })
	if err != nil {
		return nil, err
	}
	return GetRequest200JSONResponse{EntryPageJSONResponse(page)}, nil
}

func (s *Server) ActorActivity(ctx context.Context, req ActorActivityRequestObject) (ActorActivityResponseObject, error) {
	p := req.Params
	f, err := s.filter(filterParams{actorID: &req.ActorId, tables: deref(p.Table), actions: deref(p.Action), since: p.Since, until: p.Until, days: p.Days, cursor: p.Cursor}, activityDays)
	if err != nil {
		return nil, err
	}
	page, err := s.page(ctx, "actorActivity", f, p.Limit, func(f query.Filter, n int) (browse.Page, error) { return s.store.List(ctx, f, n) })
	if err != nil {
		return nil, err
	}
	return ActorActivity200JSONResponse{EntryPageJSONResponse(page)}, nil
}

func (s *Server) MyActivity(ctx context.Context, req MyActivityRequestObject) (MyActivityResponseObject, error) {
	me := sessionOf(ctx).token.ActorID
	if me == "" {
		return nil, newProblem(http.StatusNotFound, "this token has no actor id: create one with walscribe token create --actor-id ID")
	}
	p := req.Params
	f, err := s.filter(filterParams{actorID: &me, tables: deref(p.Table), actions: deref(p.Action), since: p.Since, until: p.Until, days: p.Days, cursor: p.Cursor}, activityDays)
	if err != nil {
		return nil, err
	}
	page, err := s.page(ctx, "myActivity", f, p.Limit, func(f query.Filter, n int) (browse.Page, error) { return s.store.List(ctx, f, n) })
	if err != nil {
		return nil, err
	}
	return MyActivity200JSONResponse{EntryPageJSONResponse(page)}, nil
}

func (s *Server) GetSummary(ctx context.Context, req GetSummaryRequestObject) (GetSummaryResponseObject, error) {
	p := req.Params
	f, err := s.filter(filterParams{tables: deref(p.Table), actions: deref(p.Action), actorID: p.ActorId, since: p.Since, until: p.Until, days: p.Days}, summaryDays)
	if err != nil {
		return nil, err
	}
	if f.Until.Sub(f.Since) > 366*24*time.Hour {
		return nil, newProblem(http.StatusBadRequest, "a summary covers at most 366 days: narrow since and until")
	}
	top := 10
	if p.Top != nil {
		top = *p.Top
	}
	sum, err := query.Summarize(ctx, s.pool, pgx.Identifier{s.cfg.Schema}.Sanitize(), f, top)
	if err != nil {
		return nil, s.classify(err)
	}
	if err := s.read(ctx, "getSummary", &f, "", int(sum.Entries)); err != nil {
		return nil, err
	}
	return GetSummary200JSONResponse(SummaryOf(sum)), nil
}

// SummaryOf is a summary as the API gives it.
func SummaryOf(s *query.Summary) Summary {
	out := Summary{Since: s.Since, Until: s.Until, Entries: s.Entries, Actors: s.Actors, ByAction: s.ByAction, ByTable: s.ByTable,
		TopActors: s.TopActors, ByDay: s.ByDay, DeleteSpikes: s.DeleteSpikes()}
	for _, l := range []*[]ActionCount{&out.ByAction} {
		if *l == nil {
			*l = []ActionCount{}
		}
	}
	if out.ByTable == nil {
		out.ByTable = []TableCount{}
	}
	if out.TopActors == nil {
		out.TopActors = []ActorCount{}
	}
	if out.ByDay == nil {
		out.ByDay = []DayCount{}
	}
	if out.DeleteSpikes == nil {
		out.DeleteSpikes = []Spike{}
	}
	return out
}

func (s *Server) ListExports(ctx context.Context, req ListExportsRequestObject) (ListExportsResponseObject, error) {
	limit := 50
	if req.Params.Limit != nil {
		limit = *req.Params.Limit
	}
	recs, err := export.List(ctx, s.pool, pgx.Identifier{s.cfg.Schema}.Sanitize(), limit)
	if err != nil {
		return nil, s.classify(err)
	}
	out := ListExports200JSONResponse{Data: []Export{}}
	for _, r := range recs {
		out.Data = append(out.Data, Export{ExportId: r.ID, State: ExportState(r.State), At: r.At, Requester: r.Requester,
			Destination: r.Destination, Format: r.Format, Entries: r.Entries, Bytes: r.Bytes, Error: r.Error})
	}
	return out, nil
}

func (s *Server) PostEvent(ctx context.Context, req PostEventRequestObject) (PostEventResponseObject, error) {
	sess := sessionOf(ctx)
	b := req.Body
	who := sess.caller
	if b.RequestId != nil && *b.RequestId != "" {
		if !requestIDPattern.MatchString(*b.RequestId) {
			return nil, newProblem(http.StatusBadRequest, "request_id: 1 to 200 letters, digits and ._:/+=-")
		}
		who.RequestID = *b.RequestId
	}
	if err := s.ownWords(b.Action, deref(b.Target)); err != nil {
		return nil, err
	}
	e := Event{Action: b.Action, Target: deref(b.Target), ObjectID: deref(b.ObjectId), Who: who}
	if b.Data != nil {
		e.Data = *b.Data
	}
	if err := s.events.Log(ctx, e); err != nil {
		if pg.Is(err, "22023") { // log_event's own refusals: a word walscribe keeps, an empty action
			var pe *pgconn.PgError
			errors.As(err, &pe)
			return nil, newProblem(http.StatusBadRequest, strings.TrimPrefix(pe.Message, "walscribe: "))
		}
		s.log.Sugar().Errorw("record an event", "error", err)
		return nil, newProblem(http.StatusServiceUnavailable, "the event could not be recorded; try again (the server's log says why)")
	}
	return PostEvent202JSONResponse{Status: Accepted}, nil
}

// ownActions are the actions of the events walscribe writes itself; a
// posted event may not take one, nor be about walscribe's own tables, so
// that nobody posts an alert, a read or a restore that looks like
// walscribe's.
var ownActions = []string{"read", "alert", "restored", "pruned", "token_created", "token_revoked", "gap", "rules",
	"insert", "update", "delete", "truncate"}

func (s *Server) ownWords(action, target string) error {
	word := strings.ToLower(strings.TrimSpace(action))
	for _, own := range ownActions {
		if word == own || strings.HasPrefix(word, own+":") {
			return newProblem(http.StatusBadRequest, fmt.Sprintf("action %q: a word walscribe records itself; give the event its own word, such as viewed or exported_report", action))
		}
	}
	schema, _ := query.SplitTable(strings.ToLower(strings.TrimSpace(target)))
	if target != "" && (schema == "walscribe" || schema == strings.ToLower(s.cfg.Schema)) {
		return newProblem(http.StatusBadRequest, fmt.Sprintf("target %q: walscribe's own tables are not an application's to record events about", target))
	}
	return nil
}

func (s *Server) WhoAmI(ctx context.Context, req WhoAmIRequestObject) (WhoAmIResponseObject, error) {
	return WhoAmI200JSONResponse(TokenOf(sessionOf(ctx).token)), nil
}

func (s *Server) ListTokens(ctx context.Context, req ListTokensRequestObject) (ListTokensResponseObject, error) {
	tokens, err := s.tokens.List(ctx)
	if err != nil {
		return nil, s.classify(err)
	}
	out := ListTokens200JSONResponse{Data: []Token{}}
	for _, t := range tokens {
		out.Data = append(out.Data, TokenOf(t))
	}
	return out, nil
}

// TokenOf is a token as the API shows it: never its secret.
func TokenOf(t auth.Token) Token {
	out := Token{TokenId: t.ID, Name: t.Name, Role: TokenRole(t.Role.String()), CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy}
	if t.ActorID != "" {
		out.ActorId = &t.ActorID
	}
	if !t.ExpiresAt.IsZero() {
		out.ExpiresAt = &t.ExpiresAt
	}
	if !t.RevokedAt.IsZero() {
		out.RevokedAt = &t.RevokedAt
	}
	return out
}

func (s *Server) ExportEntries(ctx context.Context, req ExportEntriesRequestObject) (ExportEntriesResponseObject, error) {
	p := req.Params
	f, err := s.filter(filterParams{tables: deref(p.Table), actions: deref(p.Action), actorID: p.ActorId, actor: p.Actor, requestID: p.RequestId,
		dbUser: p.DbUser, ip: p.Ip, pk: p.Pk, changed: p.Changed, xid: p.Xid, since: p.Since, until: p.Until, days: p.Days}, listDays)
	if err != nil {
		return nil, err
	}
	format := Csv
	if p.Format != nil {
		format = *p.Format
	}
	return download{s: s, ctx: ctx, f: f, format: format}, nil
}

// download streams the entries of a filter, oldest first, and records
// the read with the number of rows sent once it is done.
type download struct {
	s      *Server
	ctx    context.Context
	f      query.Filter
	format ExportEntriesParamsFormat
}

func (d download) VisitExportEntriesResponse(w http.ResponseWriter) error {
	// Recorded before a row is sent (nothing leaves unrecorded), and once
	// more with the number of rows sent.
	if err := d.s.read(d.ctx, "exportEntries", &d.f, "", -1); err != nil {
		p, _ := asProblem(err)
		writeProblem(w, &http.Request{URL: &url.URL{Path: BaseURL + "/export"}}, p)
		return nil
	}
	schema := pgx.Identifier{d.s.cfg.Schema}.Sanitize()
	name := "walscribe-" + d.f.Since.UTC().Format("20060102T150405Z") + "-" + d.f.Until.UTC().Format("20060102T150405Z")
	out := &streamWriter{w: w, rc: http.NewResponseController(w)}
	var rows int64
	var err error
	if d.format == Jsonl {
		out.header = func() {
			w.Header().Set("Content-Type", "application/jsonl; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.jsonl"`)
		}
		rows, err = query.WriteJSON(d.ctx, d.s.pool, schema, d.f, out, nil)
	} else {
		out.header = func() {
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
		}
		rows, err = query.WriteCSV(d.ctx, d.s.pool, schema, d.f, out, nil)
	}
	// What was sent is recorded even when the client went away.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), 10*time.Second)
	defer cancel()
	if rerr := d.s.read(rctx, "exportEntries.sent", &d.f, "", int(rows)); rerr != nil {
		d.s.log.Sugar().Errorw("record a download", "rows", rows, "error", rerr)
	}
	if err != nil {
		d.s.log.Sugar().Errorw("download entries", "rows", rows, "error", err)
		if !out.started {
			p, _ := asProblem(d.s.classify(err))
			writeProblem(w, &http.Request{URL: &url.URL{Path: BaseURL + "/export"}}, p)
			return nil
		}
		// Cut the transfer off, so that the client sees it broken rather
		// than a whole file.
		panic(http.ErrAbortHandler)
	}
	if !out.started {
		out.header()
		w.WriteHeader(http.StatusOK)
	}
	return nil
}

// streamWriter sends a download: its headers with the first bytes, and
// each write with a fresh deadline, so that a client that stops reading
// does not hold a connection of the pool for ever.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	header  func()
	started bool
}

// downloadStall is how long a download waits for a client that does not read.
const downloadStall = 30 * time.Second

func (s *streamWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.header()
		s.w.WriteHeader(http.StatusOK)
	}
	s.rc.SetWriteDeadline(time.Now().Add(downloadStall))
	return s.w.Write(p)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
