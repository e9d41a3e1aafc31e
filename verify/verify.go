// Package verify checks an audit trail against its integrity log: it
// recomputes every entry's leaf hash from the row as stored, rebuilds the
// Merkle tree, and checks it against the signed checkpoints, those stored in
// the database and those kept outside it. It names every entry altered,
// missing, inserted or out of order.
package verify

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/walscribe/walscribe/integrity"
	"github.com/walscribe/walscribe/prune"
)

// Kinds of finding.
const (
	Altered    = "altered"    // the row does not hash to the leaf the log holds for it
	Missing    = "missing"    // entries the log holds are not in the trail
	Inserted   = "inserted"   // an entry the log does not hold
	Reordered  = "reordered"  // ids out of (commit_lsn, seq) order
	Checkpoint = "checkpoint" // a checkpoint forged, altered, or not matching the log
	LogAltered = "log"        // the stored leaf records do not give a signed root
	Prune      = "prune"      // a prune record forged, altered, or not matching the log
)

// Finding is one thing wrong with the trail.
type Finding struct {
	Kind      string `json:"kind"`
	ID        int64  `json:"id,omitempty"`      // the entry (first of a range)
	LastID    int64  `json:"last_id,omitempty"` // last of a range, when more than one
	Table     string `json:"table,omitempty"`
	CommitLSN string `json:"commit_lsn,omitempty"`
	Detail    string `json:"detail"`
}

// String is the finding as one line.
func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(f.Kind)
	switch {
	case f.LastID > f.ID:
		fmt.Fprintf(&b, " ids=%d-%d", f.ID, f.LastID)
	case f.ID > 0:
		fmt.Fprintf(&b, " id=%d", f.ID)
	}
	if f.Table != "" {
		// A table's name is the application's: nothing in it may start a
		// line or move the terminal.
		fmt.Fprintf(&b, " table=%s", printable(f.Table))
	}
	if f.CommitLSN != "" {
		fmt.Fprintf(&b, " commit_lsn=%s", f.CommitLSN)
	}
	b.WriteString(": ")
	b.WriteString(f.Detail)
	return b.String()
}

// Report is the outcome of a verification.
type Report struct {
	Intact   bool  `json:"intact"`
	Entries  int64 `json:"entries"`   // rows read
	TreeSize int64 `json:"tree_size"` // leaves in the log
	// Checkpoints and External count the signed checkpoints that were
	// checked against the log, in the database and outside it.
	Checkpoints int   `json:"checkpoints_verified"`
	External    int   `json:"external_checkpoints_verified"`
	SignedSize  int64 `json:"signed_size"` // the largest size a valid checkpoint vouches for
	// Unsigned counts the entries after the newest signed checkpoint:
	// intact as far as the log goes, but vouched for by no signature yet.
	Unsigned int64 `json:"unsigned"`
	// Pruned counts the entries the log holds that the trail lacks because
	// a purge removed them, as a prune record signed with the log's key
	// says; Prunes counts those records.
	Pruned   int64     `json:"pruned"`
	Prunes   int       `json:"prune_records_verified"`
	Findings []Finding `json:"findings"`
	// State is where the next run may resume: the log at the newest
	// checkpoint it matched (nil when none did).
	State *State `json:"-"`
}

// ErrCannotVerify means nothing can be checked: no checkpoint signed by
// the verifier key given, or the log is not there.
var ErrCannotVerify = errors.New("cannot verify")

// Options are what Run checks.
type Options struct {
	Schema   string        // the audit schema
	Verifier note.Verifier // the log's verifier key
	// Dir holds checkpoints copied outside the database
	// (integrity.checkpoint_dir); "" for none.
	Dir string
	// From resumes from a state an earlier run saved: only entries after
	// it are read; nil for a full run.
	From *State
	// Progress, when set, is told the id of each entry read and the
	// newest id.
	Progress func(id, newest int64)
}

// signedCheckpoint is a checkpoint whose signature holds, and where it
// came from.
type signedCheckpoint struct {
	integrity.Checkpoint
	where string // in the database, or a file name
	note  []byte // as signed
}

// Run verifies the trail in the database conn is connected to. The error is
// for what stopped the verification (ErrCannotVerify among them); what is
// wrong with the trail is in the report's findings.
func Run(ctx context.Context, c1, c2 *pgx.Conn, o Options) (*Report, error) {
	// Both read in one snapshot: a batch the daemon commits meanwhile is
	// seen whole, entries and leaves, or not at all.
	conn, leavesConn, end, err := snapshot(ctx, c1, c2)
	if err != nil {
		return nil, err
	}
	defer end()
	r := &Report{Findings: []Finding{}}
	schema := pgx.Identifier{o.Schema}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, schema+".integrity_checkpoints").Scan(&exists); err != nil {
		return nil, fmt.Errorf("read the audit schema: %w", err)
	}
	if !exists {
		return nil, fmt.Errorf("%w: schema %q has no integrity log (run walscribe setup with this version, and set integrity.enabled)", ErrCannotVerify, o.Schema)
	}
	checkpoints, err := loadCheckpoints(ctx, conn, schema, o, r)
	if err != nil {
		return nil, err
	}
	if len(checkpoints) == 0 {
		return nil, fmt.Errorf("%w: no checkpoint signed by %s, in the database or in %s", ErrCannotVerify, o.Verifier.Name(), orNone(o.Dir))
	}
	pruned, err := loadPrunes(ctx, conn, leavesConn, schema, o, r)
	if err != nil {
		return nil, err
	}
	w := &walk{r: r, checkpoints: checkpoints, tree: &integrity.Tree{}, next: 1, pruned: pruned}
	if o.From != nil {
		if err := w.resume(ctx, conn, schema, o.From); err != nil {
			return nil, err
		}
	}
	leaves, err := integrity.OpenLeaves(ctx, leavesConn, schema, w.next, 0)
	if err != nil {
		return nil, err
	}
	defer leaves.Close()
	w.leaves = leaves
	var newest int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM `+schema+`.entries`).Scan(&newest); err != nil {
		return nil, fmt.Errorf("read the newest entry: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT `+entryColumns+` FROM `+schema+`.entries e WHERE e.id >= $1 ORDER BY e.id`, w.next)
	if err != nil {
		return nil, fmt.Errorf("read the entries: %w", err)
	}
	var row entryRow
	dest := row.dest()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read the entries: %w", err)
		}
		if err := w.entry(&row); err != nil {
			rows.Close()
			return nil, err
		}
		if o.Progress != nil {
			o.Progress(w.lastID, newest)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the entries: %w", err)
	}
	if err := w.end(); err != nil {
		return nil, err
	}
	r.TreeSize = w.tree.Size()
	for _, c := range checkpoints {
		r.SignedSize = max(r.SignedSize, c.Size)
	}
	r.Unsigned = max(0, r.TreeSize-r.SignedSize)
	r.Intact = len(r.Findings) == 0
	return r, nil
}

func orNone(dir string) string {
	if dir == "" {
		return "no checkpoint directory (--checkpoints)"
	}
	return dir
}

// loadCheckpoints reads the checkpoints stored in the database and in
// o.Dir, and returns those whose signature holds, by size. Any that does
// not is a finding; when none of them is signed by the verifier's key,
// the key is likely the wrong one, and that is ErrCannotVerify.
func loadCheckpoints(ctx context.Context, conn querier, schema string, o Options, r *Report) ([]signedCheckpoint, error) {
	var out []signedCheckpoint
	wrongKey, total := 0, 0
	var foundKeys []string
	check := func(where string, msg []byte, size int64, root []byte) {
		total++
		cp, err := integrity.Open(msg, o.Verifier)
		if err != nil {
			var wk *integrity.WrongKeyError
			if errors.As(err, &wk) {
				wrongKey++
				foundKeys = append(foundKeys, wk.Found...)
			}
			r.Findings = append(r.Findings, Finding{Kind: Checkpoint, Detail: fmt.Sprintf("%s: %v", where, err)})
			return
		}
		if size >= 0 && (cp.Size != size || string(root) != string(cp.Root[:])) {
			r.Findings = append(r.Findings, Finding{Kind: Checkpoint,
				Detail: fmt.Sprintf("%s: the row says size %d, the signed checkpoint %d (or their roots differ): the row was altered", where, size, cp.Size)})
			return
		}
		out = append(out, signedCheckpoint{Checkpoint: cp, where: where, note: msg})
	}
	rows, err := conn.Query(ctx, `SELECT tree_size, root, note FROM `+schema+`.integrity_checkpoints ORDER BY tree_size`)
	if err != nil {
		return nil, fmt.Errorf("read the signed checkpoints: %w", err)
	}
	var size int64
	var root []byte
	var msg string
	_, err = pgx.ForEachRow(rows, []any{&size, &root, &msg}, func() error {
		check(fmt.Sprintf("checkpoint of size %d in the database", size), []byte(msg), size, slices.Clone(root))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the signed checkpoints: %w", err)
	}
	if o.Dir != "" {
		files, err := filepath.Glob(filepath.Join(o.Dir, "checkpoint-*"))
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%w: no checkpoint file (checkpoint-*) in %s", ErrCannotVerify, o.Dir)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f, err)
			}
			check(f, b, -1, nil)
		}
	}
	if total > 0 && wrongKey == total {
		slices.Sort(foundKeys)
		return nil, fmt.Errorf("%w: no checkpoint is signed by the verifier key given (%s); they are signed by %s: is it this log's verifier key?",
			ErrCannotVerify, o.Verifier.Name(), strings.Join(slices.Compact(foundKeys), ", "))
	}
	slices.SortStableFunc(out, func(a, b signedCheckpoint) int { return int(a.Size - b.Size) })
	return out, nil
}

// walk is the state of one pass over the entries in id order.
type walk struct {
	r           *Report
	checkpoints []signedCheckpoint // by size
	tree        *integrity.Tree    // built from the stored leaves, which the signed roots vouch for
	leaves      *integrity.LeafReader
	next        int64 // the id expected next
	lastID      int64
	lastLSN     pglogrepl.LSN
	lastSeq     int64
	lastGood    int64 // the largest size a checkpoint matched so far
	pruned      prune.IDs
}

// resume starts the walk from a saved state, once the log is found to
// still hold the tree the state saved: a trail cut back, or its log
// rewritten, since the last run is a finding.
func (w *walk) resume(ctx context.Context, conn querier, schema string, s *State) error {
	t, err := s.tree()
	if err != nil {
		return err
	}
	var frontier []byte
	err = conn.QueryRow(ctx, `SELECT tree FROM `+schema+`.integrity_leaves WHERE first_id + octet_length(leaves) / 32 - 1 = $1`, t.Size()).Scan(&frontier)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		var last int64
		if err := conn.QueryRow(ctx, `SELECT coalesce(max(first_id + octet_length(leaves) / 32 - 1), 0) FROM `+schema+`.integrity_leaves`).Scan(&last); err != nil {
			return fmt.Errorf("read the integrity log: %w", err)
		}
		if last < t.Size() {
			w.r.Findings = append(w.r.Findings, Finding{Kind: Missing, ID: last + 1, LastID: t.Size(),
				Detail: fmt.Sprintf("the last run verified %d entries; the trail's log ends at %d (cut short, or restored from an older backup)", t.Size(), last)})
		} else {
			w.r.Findings = append(w.r.Findings, Finding{Kind: LogAltered, ID: 1, LastID: t.Size(),
				Detail: "the integrity log no longer has the record the last run ended at: its records were rewritten"})
		}
	case err != nil:
		return fmt.Errorf("read the integrity log: %w", err)
	case string(frontier) != string(t.Frontier()):
		w.r.Findings = append(w.r.Findings, Finding{Kind: LogAltered, ID: 1, LastID: t.Size(),
			Detail: "the integrity log's tree at the size the last run verified is not the one it verified: rewritten since"})
	}
	w.tree, w.next, w.lastID, w.lastGood = t, t.Size()+1, t.Size(), t.Size()
	w.lastLSN, w.lastSeq = s.lsn(), s.Seq
	return nil
}

// entryColumns are what verify reads of an entry (aliased e): what names
// it in a finding, and the text its leaf hashes.
var entryColumns = `e.id, e.commit_lsn, e.seq, e.schema_name, e.table_name, ` + integrity.RowSQL("e")

// entryRow is one entry as entryColumns reads it.
type entryRow struct {
	id            int64
	lsn           pglogrepl.LSN
	seq           int64
	schema, table string
	text          string
}

func (r *entryRow) dest() []any {
	return []any{&r.id, &r.lsn, &r.seq, &r.schema, &r.table, &r.text}
}

// entry checks one row.
func (w *walk) entry(row *entryRow) error {
	id, lsn, seq := row.id, row.lsn, row.seq
	w.r.Entries++
	here := Finding{ID: id, Table: row.schema + "." + row.table, CommitLSN: lsn.String()}
	if id < w.next {
		here.Kind, here.Detail = Inserted, fmt.Sprintf("a second entry with id %d", id)
		w.r.Findings = append(w.r.Findings, here)
		return nil
	}
	if id > w.next {
		if err := w.missing(id - 1); err != nil {
			return err
		}
	}
	stored, ok, err := w.leaves.Leaf(id)
	if err != nil {
		return err
	}
	leaf := integrity.LeafHash(row.text)
	switch {
	case !ok:
		here.Kind, here.Detail = Inserted, "the integrity log has no leaf for it"
		w.r.Findings = append(w.r.Findings, here)
		w.next = id + 1
		w.lastID, w.lastLSN, w.lastSeq = id, lsn, seq
		return nil
	case stored != leaf:
		here.Kind, here.Detail = Altered, "the row does not hash to the leaf the log holds for it"
		w.r.Findings = append(w.r.Findings, here)
	}
	if w.lastID > 0 && (lsn < w.lastLSN || lsn == w.lastLSN && seq <= w.lastSeq) {
		here.Kind, here.Detail = Reordered, fmt.Sprintf("(commit_lsn, seq) = (%s, %d) comes after entry %d's (%s, %d)", lsn, seq, w.lastID, w.lastLSN, w.lastSeq)
		w.r.Findings = append(w.r.Findings, here)
	}
	w.lastID, w.lastLSN, w.lastSeq = id, lsn, seq
	w.next = id + 1
	return w.append(stored)
}

// missing handles the ids from w.next to last, which the trail lacks: the
// log's leaves keep the tree whole.
func (w *walk) missing(last int64) error {
	first := w.next
	if err := w.fill(last); err != nil {
		return err
	}
	w.hole(first, last, "entries the integrity log holds are not in the trail (deleted)")
	w.next = last + 1
	return nil
}

// hole reports the ids first..last, which the trail lacks: missing, but
// for those a verified prune record removed.
func (w *walk) hole(first, last int64, detail string) {
	missing, pruned := split(first, last, w.pruned)
	w.r.Pruned += pruned
	for _, m := range missing {
		w.r.Findings = append(w.r.Findings, Finding{Kind: Missing, ID: m.First, LastID: m.Last, Detail: detail})
	}
}

// fill appends the stored leaves that follow the tree, up to entry last
// (0: as far as they go).
func (w *walk) fill(last int64) error {
	for last == 0 || w.tree.Size() < last {
		stored, ok, err := w.leaves.Leaf(w.tree.Size() + 1)
		if err != nil || !ok {
			return err
		}
		if err := w.append(stored); err != nil {
			return err
		}
	}
	return nil
}

// append adds the next leaf, and checks the checkpoints of the size
// reached.
func (w *walk) append(leaf tlog.Hash) error {
	w.tree.Append(leaf)
	size := w.tree.Size()
	for _, c := range w.checkpoints {
		if c.Size != size {
			continue
		}
		if c.Root != w.tree.Root() {
			w.r.Findings = append(w.r.Findings, Finding{Kind: LogAltered, ID: w.lastGood + 1, LastID: size,
				Detail: fmt.Sprintf("the integrity log's leaves do not give the root of %s: leaves of these entries were altered", c.where)})
		} else {
			w.lastGood = size
			w.r.State = &State{Origin: c.Origin, TreeSize: size, Frontier: base64.StdEncoding.EncodeToString(w.tree.Frontier()),
				CommitLSN: w.lastLSN.String(), Seq: w.lastSeq}
		}
		if strings.HasSuffix(c.where, "in the database") {
			w.r.Checkpoints++
		} else {
			w.r.External++
		}
	}
	return nil
}

// end handles what the log holds after the last entry, and checkpoints of
// sizes never reached.
func (w *walk) end() error {
	maxSigned := int64(0)
	var where string
	for _, c := range w.checkpoints {
		if c.Size > maxSigned {
			maxSigned, where = c.Size, c.where
		}
	}
	// Leaves after the newest entry: entries deleted at the end.
	first := w.tree.Size() + 1
	if err := w.fill(0); err != nil {
		return err
	}
	if last := w.tree.Size(); last >= first {
		w.hole(first, last, "the newest entries the integrity log holds are not in the trail (deleted)")
	}
	if maxSigned > w.tree.Size() {
		w.r.Findings = append(w.r.Findings, Finding{Kind: Missing, ID: w.tree.Size() + 1, LastID: maxSigned,
			Detail: fmt.Sprintf("%s vouches for %d entries; the trail and its log end at %d (cut short, or restored from an older backup)", where, maxSigned, w.tree.Size())})
	}
	return nil
}

// printable is s, quoted when it holds anything but printable characters
// other than spaces.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) || r == ' ' {
			return strconv.Quote(s)
		}
	}
	return s
}
