package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pglogrepl"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/audit"
	"github.com/walscribe/walscribe/cdc"
)

// Progress while nothing tracked changes.
//
// WAL written elsewhere (other tables, other databases, the sink itself)
// would be kept on disk for ever if the slot stayed at the last tracked
// commit. When nothing is in flight, the server's WAL end from a keepalive
// is recorded as progress through the sink like a transaction — stored, and
// then acknowledged, after everything before it — on a timer.
//
// A server that shuts down cleanly (pg_ctl stop -m fast, systemctl stop)
// waits until its walsender's client confirms everything sent, its shutdown
// checkpoint record included, and asks for that with a keepalive. The sink
// may be that very server, which by then refuses connections, so the
// progress cannot be stored first. When nothing is pending the daemon
// confirms the keepalive's position at once: everything before it has been
// read, and none of it is a tracked change waiting to be stored. Before
// that it writes an idle note (in spool.dir) saying "stored S, confirmed W
// while idle". When it starts again and finds the slot ahead of the stored
// progress, a note covering that stretch tells this benign advance from a
// real gap (someone else consuming or moving the slot), which is recorded
// as one. When something is pending and the sink cannot store it, the
// daemon ends the session instead of holding the shutdown up: the server
// resends what was not confirmed when it is back.

// idleNote is the record of an acknowledgement past the stored progress.
type idleNote struct {
	Slot     string        `json:"slot"`
	Database string        `json:"database"`
	SystemID string        `json:"system_id"`
	Stored   pglogrepl.LSN `json:"stored_lsn"`
	Acked    pglogrepl.LSN `json:"acked_lsn"`
	At       time.Time     `json:"at"`
}

// idleNotePath is where the note of this slot, database and server lives:
// processes of other servers sharing the directory keep theirs apart.
func (d *Daemon) idleNotePath(systemID string) string {
	dir := d.cfg.Spool.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	sum := sha256.Sum256([]byte(systemID + "/" + d.database))
	return filepath.Join(dir, fmt.Sprintf("walscribe-%s-%x.idle-ack", d.cfg.Slot, sum[:6]))
}

// writeIdleNote records, durably, that acked is confirmed while only
// stored is stored.
func (d *Daemon) writeIdleNote(stored, acked pglogrepl.LSN) error {
	n := idleNote{Slot: d.cfg.Slot, Database: d.database, SystemID: d.systemID, Stored: stored, Acked: acked, At: time.Now().UTC()}
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	path := d.idleNotePath(d.systemID)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write the idle note %s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// idleAdvance reports whether the slot's position slotAt, ahead of the
// stored progress, is covered by an idle note of this server: nothing
// tracked lies between them.
func (d *Daemon) idleAdvance(ctx context.Context, stored, slotAt pglogrepl.LSN) (bool, error) {
	conn, err := cdc.Dial(ctx, d.cfg.SourceDSN)
	if err != nil {
		return false, err
	}
	systemID, err := conn.SystemID(ctx)
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return false, err
	}
	path := d.idleNotePath(systemID)
	b, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("cannot read the idle note", zap.String("path", path), zap.Error(err))
		}
		return false, nil
	}
	var n idleNote
	if err := json.Unmarshal(b, &n); err != nil {
		d.log.Warn("idle note unreadable; ignored", zap.String("path", path), zap.Error(err))
		return false, nil
	}
	return n.Slot == d.cfg.Slot && n.Database == d.database && n.SystemID == systemID &&
		n.Stored <= stored && slotAt <= n.Acked, nil
}

// idle reports whether nothing is in flight: no transaction being decoded,
// everything handed to the sink stored.
func (d *Daemon) idle() bool {
	return !d.dec.InTransaction() && d.queued == d.Durable()
}

// errSinkDown ends a session while the sink cannot store what the server
// sent: a server that shuts down waits for its client to confirm
// everything, and a session held open would hold the shutdown up. The
// server sends again what was not confirmed when the session resumes, once
// the sink stores again.
var errSinkDown = errors.New("the sink cannot store what the server sent (is the server shutting down?): " +
	"ending the session so as not to hold the server up; it resumes once the sink stores again")

// keepalive handles a keepalive: idle progress on a timer, and a prompt
// answer when the server asks for one.
func (d *Daemon) keepalive(ctx context.Context, conn *cdc.Conn, ch chan<- *audit.Transaction, msg cdc.Message) error {
	walEnd := msg.ServerWALEnd
	if !d.idle() {
		if ok, _, _ := d.sink.Health(); msg.ReplyRequested && !ok {
			return errSinkDown
		}
		return nil
	}
	if walEnd <= d.queued {
		return nil
	}
	if msg.ReplyRequested && walEnd > d.acked {
		// Confirmed with the status sent right after this keepalive.
		if err := d.writeIdleNote(d.Durable(), walEnd); err != nil {
			d.log.Warn("confirming idle progress without a note: if walscribe restarts before it is stored, the next start records a slot_ahead gap over WAL that held no tracked change", zap.Error(err))
		}
		d.acked = walEnd
		d.idleAt = time.Now()
		return d.queue(ctx, conn, ch, &audit.Transaction{EndLSN: walEnd})
	}
	since := time.Since(d.idleAt)
	if since < d.cfg.StatusInterval || (int64(walEnd-d.queued) < d.cfg.IdleGap && since < d.cfg.IdleMaxWait) {
		return nil
	}
	d.idleAt = time.Now()
	return d.queue(ctx, conn, ch, &audit.Transaction{EndLSN: walEnd})
}
