package main

import (
	"errors"
	"testing"

	"github.com/jackc/pglogrepl"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/walscribe/walscribe/daemon"
)

// TestStopIsLogged: why the daemon stopped is a log record, with the WAL
// position and the table of a message it could not decode; main does not
// print it again.
func TestStopIsLogged(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	err := error(&daemon.DecodeError{LSN: pglogrepl.LSN(0x1_0A00_0028), Table: "public.orders", Err: errors.New("message too short")})
	logStop(zap.New(core), err)
	entries := logs.All()
	if len(entries) != 1 || entries[0].Level != zapcore.ErrorLevel || entries[0].Message != "walscribe stopped" {
		t.Fatalf("log records %+v, want one error record", entries)
	}
	fields := entries[0].ContextMap()
	if fields["lsn"] != "1/A000028" || fields["table"] != "public.orders" || fields["error"] == nil {
		t.Errorf("fields %v, want lsn 1/A000028, table public.orders and the error", fields)
	}
	if !errors.As(loggedError{err}, new(loggedError)) || !errors.As(loggedError{err}, new(*daemon.DecodeError)) {
		t.Error("loggedError hides what it wraps")
	}
}
