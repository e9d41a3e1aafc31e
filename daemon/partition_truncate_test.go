package daemon

import (
	"fmt"
	"strings"
	"testing"
)

// TestTruncateOfOnePartition: PostgreSQL does not stream the TRUNCATE of
// one partition when the publication publishes through the root; the
// bridge reports it, and the trail records it under the root's name with
// the partition, flagged partition_truncate, in its place among the
// transaction's changes. A TRUNCATE of the root is recorded once, as
// PostgreSQL streams it, not again for each partition.
func TestTruncateOfOnePartition(t *testing.T) {
	h := newHarness(t, `CREATE TABLE p (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE p_2024 PARTITION OF p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE p_2025 PARTITION OF p FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`, "p")
	h.start()
	h.exec(`INSERT INTO p VALUES (1, '2024-05-01'), (2, '2025-05-01')`)
	h.exec(`BEGIN; INSERT INTO p VALUES (3, '2024-06-01'); TRUNCATE p_2024; INSERT INTO p VALUES (4, '2024-07-01'); COMMIT`)
	h.exec(`TRUNCATE p`)
	// In a transaction large enough to be streamed while in progress.
	h.exec(`BEGIN; INSERT INTO p SELECT i, '2025-02-01' FROM generate_series(10, 5000) i; TRUNCATE p_2025;
		INSERT INTO p SELECT i, '2025-03-01' FROM generate_series(10, 5000) i; COMMIT`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'truncate' AND table_name = 'p' AND new = '{"partition": "public.p_2024"}'
		AND flags = '{partition_truncate}'`); n != 1 {
		t.Errorf("%d flagged truncate entries of partition p_2024, want 1", n)
	}
	// In its place: after the insert of 3, before the insert of 4.
	if n := h.count(`SELECT count(*) FROM audit.entries a, audit.entries tr, audit.entries b
		WHERE a.pk = '{"id": 3, "at": "2024-06-01"}' AND b.pk = '{"id": 4, "at": "2024-07-01"}' AND tr.action = 'truncate' AND tr.new ? 'partition'
		  AND a.xid = tr.xid AND b.xid = tr.xid AND a.seq < tr.seq AND tr.seq < b.seq`); n != 1 {
		t.Error("the partition's truncate is not in its place among its transaction's changes")
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'truncate' AND table_name = 'p' AND flags IS NULL`); n != 1 {
		t.Errorf("%d truncate entries of p as PostgreSQL streams them, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'truncate' AND new = '{"partition": "public.p_2025"}'`); n != 1 {
		t.Errorf("%d truncate entries of p_2025 in the streamed transaction, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'truncate'`); n != 3 {
		t.Errorf("%d truncate entries in all, want 3 (the root's TRUNCATE recorded once, not per partition)", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'partition_truncates'`); n != 0 {
		t.Errorf("%d entries of the bridge's own table", n)
	}
}

// TestPartitionTruncateInSavepoints: in a transaction streamed while in
// progress, a partition TRUNCATE inside a savepoint rolled back is not
// recorded, and one followed by a savepoint rolled back is.
func TestPartitionTruncateInSavepoints(t *testing.T) {
	h := newHarness(t, `CREATE TABLE p (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE p_2024 PARTITION OF p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE p_2025 PARTITION OF p FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
		CREATE TABLE big (id int PRIMARY KEY, pad text)`, "p", "big")
	h.start()
	h.exec(`INSERT INTO p VALUES (1, '2024-05-01'), (2, '2025-05-01')`)
	// Rolled back with its savepoint: the rows stay, nothing is recorded.
	h.exec(`BEGIN; SAVEPOINT s; TRUNCATE p_2024; INSERT INTO big SELECT i, repeat('x', 100) FROM generate_series(1, 3000) i;
		ROLLBACK TO s; INSERT INTO p VALUES (3, '2025-06-01'); COMMIT`)
	// Committed, then a savepoint rolled back: recorded.
	t.Cleanup(func() {
		if t.Failed() {
			log := srv.Log()
			if i := strings.Index(log, "deadlock"); i >= 0 {
				t.Logf("SERVER LOG:\n%s", log[max(0, i-3000):min(len(log), i+3000)])
			}
		}
	})
	h.exec(`BEGIN; TRUNCATE p_2025; SAVEPOINT b; INSERT INTO big SELECT i, repeat('x', 100) FROM generate_series(10000, 13000) i;
		ROLLBACK TO b; INSERT INTO p VALUES (4, '2024-06-01'); COMMIT`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'truncate' AND new = '{"partition": "public.p_2024"}'`); n != 0 {
		t.Errorf("a partition TRUNCATE rolled back with its savepoint is recorded %d times", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'truncate' AND new = '{"partition": "public.p_2025"}'`); n != 1 {
		t.Errorf("a committed partition TRUNCATE followed by a savepoint rolled back is recorded %d times, want 1", n)
	}
}

// TestRootTruncateAcrossStreamChunks: the TRUNCATE of a root with many
// partitions, in a transaction streamed while in progress, is recorded
// once even when the server ends a chunk among the bridge's reports of its
// partitions (which the root's TRUNCATE, in the next chunk, stands for).
func TestRootTruncateAcrossStreamChunks(t *testing.T) {
	var ddl strings.Builder
	ddl.WriteString(`CREATE TABLE q (id int PRIMARY KEY, pad text) PARTITION BY RANGE (id);`)
	const parts = 400
	for i := range parts {
		fmt.Fprintf(&ddl, "CREATE TABLE q_%d PARTITION OF q FOR VALUES FROM (%d) TO (%d);", i, i*10, i*10+10)
	}
	h := newHarness(t, ddl.String(), "q")
	h.start()
	h.exec(`BEGIN; INSERT INTO q SELECT i, repeat('x', 50) FROM generate_series(0, 3999) i; TRUNCATE q;
		INSERT INTO q VALUES (1, 'after'); COMMIT`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'truncate' AND flags IS NULL AND table_name = 'q'`); n != 1 {
		t.Errorf("%d truncate entries of q as PostgreSQL streams them, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'truncate' AND new ? 'partition'`); n != 0 {
		t.Errorf("%d truncate entries of single partitions, want 0: the root's TRUNCATE stands for them", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE table_name = 'q'`); n != 4002 {
		t.Errorf("%d entries of q, want 4002", n)
	}
}

// TestPartitionTruncateContextInStream: a partition TRUNCATE at the end of
// a transaction streamed while in progress carries the context set just
// before it, not an earlier one.
func TestPartitionTruncateContextInStream(t *testing.T) {
	h := newHarness(t, `CREATE TABLE p (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE p_2024 PARTITION OF p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE p_2025 PARTITION OF p FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`, "p")
	h.start()
	h.exec(`BEGIN; SELECT audit.set_context(actor_id => 'alice');
		INSERT INTO p SELECT i, '2025-02-01' FROM generate_series(1, 5000) i;
		SELECT audit.set_context(actor_id => 'bob'); TRUNCATE p_2024; COMMIT`)
	h.sync()
	h.stop()
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'truncate' AND new = '{"partition": "public.p_2024"}' AND actor_id = 'bob'`); n != 1 {
		t.Errorf("%d truncate entries of p_2024 by bob, want 1 (the context set before it)", n)
	}
	if n := h.count(`SELECT count(*) FROM audit.entries WHERE action = 'insert' AND actor_id = 'alice'`); n != 5000 {
		t.Errorf("%d inserts by alice, want 5000", n)
	}
}
