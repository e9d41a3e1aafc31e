package integrity

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/walscribe/walscribe/internal/pgtest"
)

// testRow is an entry's values as a writer sends them.
type testRow struct {
	id, seq             int64
	lsn                 uint64
	xid                 *int64
	committed, captured time.Time
	texts               [3]string // schema, table, action
	pk, old, new, ctx   []byte
	changed, flags      []string
	opt                 [7]*string // actor_id, actor, user_agent, request_id, db_user, application_name, login_user
	ip, client          netip.Prefix
	retention           string
}

func (t *testRow) build(r *RowBuilder) (string, bool) {
	r.Reset()
	r.Int(t.id)
	r.LSN(t.lsn)
	r.Int(t.seq)
	if t.xid == nil {
		r.Null()
	} else {
		r.Int(*t.xid)
	}
	r.Micros(t.committed)
	r.Micros(t.captured)
	for _, s := range t.texts {
		r.Text(s)
	}
	r.JSON(t.pk)
	r.JSON(t.old)
	r.JSON(t.new)
	r.TextArray(t.changed)
	opt := func(i int) {
		if t.opt[i] == nil {
			r.Null()
		} else {
			r.Text(*t.opt[i])
		}
	}
	opt(0)
	opt(1)
	r.Inet(t.ip)
	opt(2)
	opt(3)
	opt(4)
	r.Inet(t.client)
	opt(5)
	r.JSON(t.ctx)
	r.Text(t.retention)
	r.TextArray(t.flags)
	opt(6)
	return r.Row()
}

// TestRowBuilderAgainstTheServer: for generated entries, RowBuilder writes
// what RowSQL makes the server give for the stored row.
func TestRowBuilderAgainstTheServer(t *testing.T) {
	ctx := context.Background()
	conn := pgtest.Connect(t, srv.NewDB(t)+"&search_path=pg_catalog,pg_temp&client_encoding=UTF8")
	if _, err := conn.Exec(ctx, entriesDDL); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	var b RowBuilder
	exact := 0
	for i := range 1500 {
		row := genRow(r, int64(i+1))
		if _, err := conn.Exec(ctx, `INSERT INTO entries VALUES ($1, $2::text::pg_lsn, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12::jsonb, $13,
			$14, $15, $16, $17, $18, $19, $20, $21, $22::jsonb, $23, $24, $25)`,
			row.id, fmt.Sprintf("%X/%X", row.lsn>>32, uint32(row.lsn)), row.seq, row.xid, row.committed, row.captured,
			row.texts[0], row.texts[1], row.texts[2], str(row.pk), str(row.old), str(row.new), row.changed,
			row.opt[0], row.opt[1], prefix(row.ip), row.opt[2], row.opt[3], row.opt[4], prefix(row.client), row.opt[5], str(row.ctx),
			row.retention, row.flags, row.opt[6]); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
		var want string
		if err := conn.QueryRow(ctx, `SELECT `+RowSQL("e")+` FROM entries e WHERE e.id = $1`, row.id).Scan(&want); err != nil {
			t.Fatal(err)
		}
		got, ok := row.build(&b)
		if !ok {
			continue
		}
		exact++
		if h, _ := b.LeafHash(); h != LeafHash(want) {
			t.Errorf("entry %d: RowBuilder.LeafHash differs from LeafHash of the server's text", row.id)
		}
		if got != want {
			t.Errorf("entry %d:\n  RowBuilder %.400q\n  the server %.400q", row.id, got, want)
		}
	}
	if exact < 1400 {
		t.Errorf("only %d of 1500 rows exact", exact)
	}
}

func str(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func prefix(p netip.Prefix) *netip.Prefix {
	if !p.IsValid() {
		return nil
	}
	return &p
}

func genRow(r *rand.Rand, id int64) *testRow {
	texts := []string{"", "a", "NULL", "null", "a b", "a,b", `"q"`, `back\slash`, "(x)", "{x}", "é😀", "\t", "x\ny", "\v\f", "ok_1", "public.orders"}
	pick := func() string {
		var b strings.Builder
		for range r.IntN(3) + 1 {
			b.WriteString(texts[r.IntN(len(texts))])
		}
		return b.String()
	}
	opt := func() *string {
		if r.IntN(3) == 0 {
			return nil
		}
		s := pick()
		return &s
	}
	arr := func() []string {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return []string{}
		}
		var a []string
		for range r.IntN(4) + 1 {
			a = append(a, pick())
		}
		return a
	}
	doc := func() []byte {
		if r.IntN(4) == 0 {
			return nil
		}
		return []byte(genDoc(r, 0))
	}
	row := &testRow{id: id, seq: r.Int64N(1 << 31), lsn: r.Uint64(),
		committed: time.UnixMicro(r.Int64N(1<<52) - 1<<51).UTC(), captured: time.UnixMicro(r.Int64N(1 << 51)),
		texts: [3]string{pick(), pick(), pick()}, pk: doc(), old: doc(), new: doc(), ctx: doc(),
		changed: arr(), flags: arr(), ip: genPrefix(r), client: genPrefix(r), retention: pick()}
	if r.IntN(2) == 0 {
		x := r.Int64()
		row.xid = &x
	}
	for i := range row.opt {
		row.opt[i] = opt()
	}
	return row
}

func genPrefix(r *rand.Rand) netip.Prefix {
	switch r.IntN(6) {
	case 0:
		return netip.Prefix{}
	case 1:
		a := netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(3)), byte(r.IntN(256))})
		return netip.PrefixFrom(a, []int{32, 24, 8, 0, 31}[r.IntN(5)])
	default:
		var b [16]byte
		for i := range b {
			if r.IntN(3) == 0 {
				b[i] = byte(r.IntN(256))
			}
		}
		switch r.IntN(5) {
		case 0: // ::ffff:a.b.c.d
			clear(b[:10])
			b[10], b[11] = 0xff, 0xff
		case 1: // ::a.b.c.d
			clear(b[:12])
			b[12] = byte(1 + r.IntN(200))
		case 2: // runs of zeros
			clear(b[2:8])
		}
		return netip.PrefixFrom(netip.AddrFrom16(b), []int{128, 64, 96, 127, 0}[r.IntN(5)])
	}
}

func genDoc(r *rand.Rand, depth int) string {
	switch k := r.IntN(10); {
	case k < 2 && depth < 3:
		var parts []string
		for range r.IntN(4) {
			parts = append(parts, genDoc(r, depth+1))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case k < 4 && depth < 3:
		keys := []string{"id", "name", "a", "é", "", "aa", "Z"}
		var parts []string
		for range r.IntN(5) {
			parts = append(parts, fmt.Sprintf(`"%s": %s`, keys[r.IntN(len(keys))], genDoc(r, depth+1)))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case k < 7:
		return []string{"1", "-0", "1.50", "1e2", "2.5E-3", "123456789012345678901234567890", "0.000", "-12.5e+1"}[r.IntN(8)]
	case k < 9:
		return `"` + []string{"x", `q\"`, `\\`, `\n`, `\u0001`, "é", `\ud83d\ude00`, "(a,b)", " "}[r.IntN(9)] + `"`
	default:
		return []string{"true", "false", "null"}[r.IntN(3)]
	}
}
