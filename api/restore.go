package api

import (
	"context"
	"fmt"
	"net/http"
)

func (s *Server) restorer() (Restorer, error) {
	if s.cfg.Restore == nil {
		return nil, newProblem(http.StatusNotImplemented, "restores are not enabled on this server: set api.restore_dsn to a role that may write the application's tables")
	}
	return s.cfg.Restore, nil
}

func (s *Server) PlanRestore(ctx context.Context, req PlanRestoreRequestObject) (PlanRestoreResponseObject, error) {
	r, err := s.restorer()
	if err != nil {
		return nil, err
	}
	plan, err := r.Plan(ctx, req.Id)
	if err != nil {
		return nil, s.classify(err)
	}
	if err := s.read(ctx, "planRestore", nil, fmt.Sprint(req.Id), 1); err != nil {
		return nil, err
	}
	return PlanRestore200JSONResponse(plan), nil
}

func (s *Server) ApplyRestore(ctx context.Context, req ApplyRestoreRequestObject) (ApplyRestoreResponseObject, error) {
	r, err := s.restorer()
	if err != nil {
		return nil, err
	}
	plan, err := r.Apply(ctx, req.Id, sessionOf(ctx).caller)
	if err != nil {
		return nil, s.classify(err)
	}
	// The plan shows the row (its key, values in its SQL or its reasons):
	// a read like any other.
	if err := s.read(ctx, "applyRestore", nil, fmt.Sprint(req.Id), 1); err != nil {
		return nil, err
	}
	if !plan.Possible {
		return nil, newProblem(http.StatusConflict, deref(plan.Reason))
	}
	return ApplyRestore200JSONResponse(plan), nil
}
