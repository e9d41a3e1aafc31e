package ui

import (
	"net/http"
	"strconv"

	"github.com/walscribe/walscribe/api"
	"github.com/walscribe/walscribe/browse"
)

// restoreView is a restore's plan (a dry run) or its result.
type restoreView struct {
	E       browse.Entry
	Plan    api.RestorePlan
	Reason  string
	Applied bool // the plan was applied (not a dry run)
}

func (v restoreView) nav() string { return "entries" }

var errRestoreOff = &httpError{http.StatusNotImplemented,
	"Restores are not enabled on this server: set api.restore_dsn to a role that may write the application's tables."}

// restoreTarget is the restorer and the entry of the request's id.
func (u *UI) restoreTarget(r *http.Request) (api.Restorer, browse.Entry, error) {
	if u.cfg.Restore == nil {
		return nil, browse.Entry{}, errRestoreOff
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return nil, browse.Entry{}, errNotFound
	}
	e, err := u.store.Entry(r.Context(), id)
	if err != nil {
		return nil, browse.Entry{}, err
	}
	return u.cfg.Restore, e, nil
}

// planRestore shows how an entry would be undone (the SQL), or why it
// cannot be, changing nothing; admins only.
func (u *UI) planRestore(w http.ResponseWriter, r *http.Request, s *session) error {
	rs, e, err := u.restoreTarget(r)
	if err != nil {
		return err
	}
	plan, err := rs.Plan(r.Context(), e.ID)
	if err != nil {
		return err
	}
	if err := u.read(r, s, "ui.planRestore", nil, strconv.FormatInt(e.ID, 10), 1); err != nil {
		return err
	}
	v := restoreView{E: e, Plan: plan, Reason: str(plan.Reason)}
	u.show(w, r, s, http.StatusOK, "restore", "Restore entry "+strconv.FormatInt(e.ID, 10)+" (dry run)", v)
	return nil
}

// applyRestore undoes an entry as the signed-in admin (the restorer
// records the restore in the trail) and shows what it did.
func (u *UI) applyRestore(w http.ResponseWriter, r *http.Request, s *session) error {
	rs, e, err := u.restoreTarget(r)
	if err != nil {
		return err
	}
	plan, err := rs.Apply(r.Context(), e.ID, api.Who(r, s.token))
	if err != nil {
		return err
	}
	v := restoreView{E: e, Plan: plan, Reason: str(plan.Reason), Applied: plan.Possible}
	status := http.StatusOK
	if !plan.Possible {
		status = http.StatusConflict
	}
	u.show(w, r, s, status, "restore", "Restore entry "+strconv.FormatInt(e.ID, 10), v)
	return nil
}
