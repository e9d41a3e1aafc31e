package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// trafficStats counts what the traffic did.
type trafficStats struct {
	txs        int   // transactions begun
	committed  int   // committed
	rolledBack int   // rolled back whole
	savepoints int   // committed with a savepoint rolled back
	lastXid    int64 // xid of the last committed transaction (32 bits, as in audit.entries)

	committedXids  []int64 // every committed transaction, in commit order
	rolledBackXids []int64 // every transaction rolled back whole
}

// shop sends the sample traffic on one connection, one transaction at a
// time.
type shop struct {
	conn  *pgx.Conn
	rng   *rand.Rand
	stats trafficStats
	kinds []txKind
}

// txKind is one kind of sample transaction. run does its work inside tx and
// says what it did in one line; commit false rolls it back.
type txKind struct {
	name   string
	weight int
	run    func(ctx context.Context, tx pgx.Tx) (line string, commit bool, err error)
}

func newShop(conn *pgx.Conn, seed uint64) *shop {
	s := &shop{conn: conn, rng: rand.New(rand.NewPCG(seed, seed^0x5eed))}
	// The first round runs each kind once in this order, so that even a
	// short run shows every action; then kinds are drawn by weight.
	s.kinds = []txKind{
		{"new customer", 2, s.newCustomer},
		{"new order", 6, s.newOrder},
		{"pay order", 4, s.payOrder},
		{"ship order", 3, s.shipOrder},
		{"rollback", 1, s.rollback},
		{"bulk price change", 1, s.bulkPrice},
		{"savepoint", 1, s.savepoint},
		{"page views", 4, s.pageViews},
		{"cancel order", 1, s.cancelOrder},
		{"purge cancelled", 1, s.purgeCancelled},
		{"change prefs", 2, s.changePrefs},
		{"truncate", 1, s.truncateViews},
		{"remove item", 1, s.removeItem},
		{"delete customer", 1, s.deleteCustomer},
	}
	return s
}

func (s *shop) pickKind() txKind {
	if s.stats.txs <= len(s.kinds) {
		return s.kinds[s.stats.txs-1]
	}
	total := 0
	for _, k := range s.kinds {
		total += k.weight
	}
	n := s.rng.IntN(total)
	for _, k := range s.kinds {
		if n < k.weight {
			return k
		}
		n -= k.weight
	}
	return s.kinds[0]
}

// actors are who the sample application says is acting, set per
// transaction as an application would (SET LOCAL audit.actor_id = ...).
var actors = [][2]string{{"17", "alice"}, {"23", "bob"}, {"svc-checkout", "checkout job"}}

// next runs one transaction and returns its line, such as
// "tx 12: update orders set status='shipped' where id=3".
func (s *shop) next(ctx context.Context) (string, error) {
	s.stats.txs++
	kind := s.pickKind()
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	actor := actors[s.rng.IntN(len(actors))]
	var xid int64
	// One call per request, as an application does: who, from where, which
	// request (audit.set_context, installed by walscribe setup).
	if err := tx.QueryRow(ctx, `SELECT audit.set_context(actor_id => $1, actor => $2, ip => $3, user_agent => 'shop-web/1.4',
			request_id => 'req-' || $4::int), pg_current_xact_id()::text::bigint % 4294967296`,
		actor[0], actor[1], fmt.Sprintf("198.51.100.%d", 10+s.rng.IntN(40)), s.stats.txs).Scan(nil, &xid); err != nil {
		return "", fmt.Errorf("%s: set the actor: %w", kind.name, err)
	}
	line, commit, err := kind.run(ctx, tx)
	if err != nil {
		return "", fmt.Errorf("%s: %w", kind.name, err)
	}
	if !commit {
		if err := tx.Rollback(ctx); err != nil {
			return "", fmt.Errorf("%s: rollback: %w", kind.name, err)
		}
		s.stats.rolledBack++
		s.stats.rolledBackXids = append(s.stats.rolledBackXids, xid)
		return fmt.Sprintf("tx %d, rolled back (must not reach the trail): %s", s.stats.txs, line), nil
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("%s: commit: %w", kind.name, err)
	}
	s.stats.committed++
	s.stats.lastXid = xid
	s.stats.committedXids = append(s.stats.committedXids, xid)
	return fmt.Sprintf("tx %d: %s", s.stats.txs, line), nil
}

// pick returns one of the ids query returns, or false when there is none.
func (s *shop) pick(ctx context.Context, tx pgx.Tx, query string, args ...any) (int64, bool, error) {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return 0, false, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(ids) == 0 {
		return 0, false, err
	}
	return ids[s.rng.IntN(len(ids))], true, nil
}

var (
	firstNames = []string{"Dana", "Ken", "Radia", "Linus", "Margaret", "Dennis", "Frances", "Donald", "Shafi", "Leslie"}
	lastNames  = []string{"Scott", "Thompson", "Perlman", "Ritchie", "Hamilton", "Allen", "Knuth", "Goldwasser", "Lamport", "Kay"}
	cities     = []string{"Lisbon", "Oslo", "Osaka", "Nairobi", "Lima", "Tartu", "Quebec"}
)

func (s *shop) newCustomer(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	first, last := firstNames[s.rng.IntN(len(firstNames))], lastNames[s.rng.IntN(len(lastNames))]
	name := first + " " + last
	email := fmt.Sprintf("%s.%d@example.com", strings.ToLower(first), s.stats.txs)
	prefs := fmt.Sprintf(`{"lang": "en", "newsletter": %t}`, s.rng.IntN(2) == 0)
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO customers (name, email, prefs) VALUES ($1, $2, $3) RETURNING id`,
		name, email, prefs).Scan(&id); err != nil {
		return "", false, err
	}
	return fmt.Sprintf("insert into customers (name, email) values ('%s', '%s') → id %d", name, email, id), true, nil
}

func (s *shop) newOrder(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	cust, ok, err := s.pick(ctx, tx, `SELECT id FROM customers ORDER BY id`)
	if err != nil {
		return "", false, err
	}
	if !ok {
		return s.newCustomer(ctx, tx)
	}
	rows, err := tx.Query(ctx, `SELECT sku FROM products ORDER BY sku`)
	if err != nil {
		return "", false, err
	}
	skus, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", false, err
	}
	s.rng.Shuffle(len(skus), func(i, j int) { skus[i], skus[j] = skus[j], skus[i] })
	skus = skus[:1+s.rng.IntN(3)]
	qty := make([]int32, len(skus))
	for i := range qty {
		qty[i] = int32(1 + s.rng.IntN(3))
	}
	tags := [][]string{{}, {}, {"gift"}, {"express"}, {"gift", "express"}}[s.rng.IntN(5)]
	method := "standard"
	if len(tags) > 0 && tags[len(tags)-1] == "express" {
		method = "express"
	}
	shipping := fmt.Sprintf(`{"city": %q, "method": %q}`, cities[s.rng.IntN(len(cities))], method)
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO orders (customer_id, tags, shipping) VALUES ($1, $2, $3) RETURNING id`,
		cust, tags, shipping).Scan(&id); err != nil {
		return "", false, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO order_items (order_id, line, sku, qty, unit_price)
		SELECT $1, x.line, x.sku, x.qty, p.price
		FROM unnest($2::text[], $3::int[]) WITH ORDINALITY AS x(sku, qty, line) JOIN products p USING (sku)`,
		id, skus, qty); err != nil {
		return "", false, err
	}
	var total string
	if err := tx.QueryRow(ctx, `UPDATE orders SET total = (SELECT sum(qty * unit_price) FROM order_items WHERE order_id = $1)
		WHERE id = $1 RETURNING total::text`, id).Scan(&total); err != nil {
		return "", false, err
	}
	return fmt.Sprintf("new order %d for customer %d: insert into orders + %d order_items; update orders set total=%s",
		id, cust, len(skus), total), true, nil
}

func (s *shop) payOrder(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	id, ok, err := s.pick(ctx, tx, `SELECT id FROM orders WHERE status = 'new' ORDER BY id`)
	if err != nil || !ok {
		return s.fallback(ctx, tx, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE orders SET status = 'paid' WHERE id = $1`, id); err != nil {
		return "", false, err
	}
	tag, err := tx.Exec(ctx, `UPDATE products p SET stock = p.stock - i.qty FROM order_items i WHERE i.order_id = $1 AND p.sku = i.sku`, id)
	if err != nil {
		return "", false, err
	}
	return fmt.Sprintf("update orders set status='paid' where id=%d; update products set stock=stock-qty → %s", id, rowCount(tag.RowsAffected())), true, nil
}

func (s *shop) shipOrder(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	id, ok, err := s.pick(ctx, tx, `SELECT id FROM orders WHERE status = 'paid' ORDER BY id`)
	if err != nil || !ok {
		return s.fallback(ctx, tx, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE orders SET status = 'shipped', shipped_at = now(), tags = array_append(tags, 'tracked') WHERE id = $1`, id); err != nil {
		return "", false, err
	}
	return fmt.Sprintf("update orders set status='shipped', shipped_at=now(), tags=tags||'tracked' where id=%d", id), true, nil
}

func (s *shop) bulkPrice(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	category := []string{"mugs", "tees"}[s.rng.IntN(2)]
	tag, err := tx.Exec(ctx, `UPDATE products SET price = round(price * 1.05, 2) WHERE category = $1`, category)
	if err != nil {
		return "", false, err
	}
	return fmt.Sprintf("update products set price=round(price*1.05, 2) where category='%s' → %s", category, rowCount(tag.RowsAffected())), true, nil
}

func (s *shop) changePrefs(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	id, ok, err := s.pick(ctx, tx, `SELECT id FROM customers ORDER BY id`)
	if err != nil || !ok {
		return s.fallback(ctx, tx, err)
	}
	patch := []string{`{"newsletter": false}`, `{"newsletter": true}`, `{"lang": "de"}`, `{"lang": "fr"}`}[s.rng.IntN(4)]
	if _, err := tx.Exec(ctx, `UPDATE customers SET prefs = prefs || $2::jsonb WHERE id = $1`, id, patch); err != nil {
		return "", false, err
	}
	return fmt.Sprintf("update customers set prefs=prefs||'%s' where id=%d", patch, id), true, nil
}

// savepoint commits work around a savepoint whose work is rolled back.
func (s *shop) savepoint(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	cust, ok, err := s.pick(ctx, tx, `SELECT id FROM customers ORDER BY id`)
	if err != nil || !ok {
		return s.fallback(ctx, tx, err)
	}
	order, ok, err := s.pick(ctx, tx, `SELECT id FROM orders ORDER BY id`)
	if err != nil || !ok {
		return s.fallback(ctx, tx, err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE customers SET prefs = prefs || '{"vip": true}' WHERE id = $1`, []any{cust}},
		{`SAVEPOINT s1`, nil},
		{`UPDATE orders SET status = $2 WHERE id = $1`, []any{order, rolledBackMarker}},
		{`INSERT INTO page_views (path, customer_id) VALUES ($2, $1)`, []any{cust, "/" + rolledBackMarker}},
		{`ROLLBACK TO SAVEPOINT s1`, nil},
		{`INSERT INTO page_views (path, customer_id) VALUES ('/account', $1)`, []any{cust}},
	} {
		if _, err := tx.Exec(ctx, q.sql, q.args...); err != nil {
			return "", false, err
		}
	}
	s.stats.savepoints++
	return fmt.Sprintf("update customers set prefs=prefs||'{\"vip\": true}' where id=%d; savepoint s1; "+
		"update orders set status='%s' where id=%d; rollback to savepoint s1; insert into page_views; commit",
		cust, rolledBackMarker, order), true, nil
}

// rollback does work and rolls it all back.
func (s *shop) rollback(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	order, ok, err := s.pick(ctx, tx, `SELECT DISTINCT order_id FROM order_items ORDER BY 1`)
	if err != nil || !ok {
		return s.fallback(ctx, tx, err)
	}
	name := "Mallory (" + rolledBackMarker + ")"
	email := fmt.Sprintf("mallory.%d@%s.example", s.stats.txs, strings.ReplaceAll(rolledBackMarker, " ", "-"))
	if _, err := tx.Exec(ctx, `INSERT INTO customers (name, email) VALUES ($1, $2)`, name, email); err != nil {
		return "", false, err
	}
	tag, err := tx.Exec(ctx, `DELETE FROM order_items WHERE order_id = $1`, order)
	if err != nil {
		return "", false, err
	}
	return fmt.Sprintf("insert into customers (name) values ('%s'); delete from order_items where order_id=%d → %s; rollback",
		name, order, rowCount(tag.RowsAffected())), false, nil
}

func (s *shop) pageViews(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	cust, ok, err := s.pick(ctx, tx, `SELECT id FROM customers ORDER BY id`)
	if err != nil || !ok {
		return s.fallback(ctx, tx, err)
	}
	category := []string{"mugs", "tees", "misc"}[s.rng.IntN(3)]
	tag, err := tx.Exec(ctx, `INSERT INTO page_views (path, customer_id)
		SELECT '/products/' || sku, $1 FROM products WHERE category = $2 ORDER BY sku`, cust, category)
	if err != nil {
		return "", false, err
	}
	return fmt.Sprintf("insert into page_views (path, customer_id) select '/products/'||sku, %d from products where category='%s' → %s",
		cust, category, rowCount(tag.RowsAffected())), true, nil
}

func (s *shop) truncateViews(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	if _, err := tx.Exec(ctx, `TRUNCATE page_views`); err != nil {
		return "", false, err
	}
	return "truncate page_views", true, nil
}

func (s *shop) cancelOrder(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	id, ok, err := s.pick(ctx, tx, `SELECT id FROM orders WHERE status = 'new' ORDER BY id`)
	if err != nil || !ok {
		return s.fallback(ctx, tx, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE orders SET status = 'cancelled' WHERE id = $1`, id); err != nil {
		return "", false, err
	}
	return fmt.Sprintf("update orders set status='cancelled' where id=%d", id), true, nil
}

func (s *shop) purgeCancelled(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	var items int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.status = 'cancelled'`).Scan(&items); err != nil {
		return "", false, err
	}
	tag, err := tx.Exec(ctx, `DELETE FROM orders WHERE status = 'cancelled'`)
	if err != nil {
		return "", false, err
	}
	if tag.RowsAffected() == 0 {
		return s.cancelOrder(ctx, tx)
	}
	return fmt.Sprintf("delete from orders where status='cancelled' → %s, and %d order_items by ON DELETE CASCADE",
		rowCount(tag.RowsAffected()), items), true, nil
}

func (s *shop) removeItem(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	id, ok, err := s.pick(ctx, tx, `SELECT i.order_id FROM order_items i JOIN orders o ON o.id = i.order_id
		WHERE o.status = 'new' GROUP BY i.order_id HAVING count(*) > 1 ORDER BY 1`)
	if err != nil || !ok {
		return s.fallback(ctx, tx, err)
	}
	var line int
	if err := tx.QueryRow(ctx, `DELETE FROM order_items WHERE order_id = $1
		AND line = (SELECT max(line) FROM order_items WHERE order_id = $1) RETURNING line`, id).Scan(&line); err != nil {
		return "", false, err
	}
	var total string
	if err := tx.QueryRow(ctx, `UPDATE orders SET total = (SELECT sum(qty * unit_price) FROM order_items WHERE order_id = $1)
		WHERE id = $1 RETURNING total::text`, id).Scan(&total); err != nil {
		return "", false, err
	}
	return fmt.Sprintf("delete from order_items where order_id=%d and line=%d; update orders set total=%s where id=%d", id, line, total, id), true, nil
}

func (s *shop) deleteCustomer(ctx context.Context, tx pgx.Tx) (string, bool, error) {
	id, ok, err := s.pick(ctx, tx, `SELECT id FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders WHERE customer_id = c.id) ORDER BY id`)
	if err != nil {
		return "", false, err
	}
	if !ok {
		return s.newCustomer(ctx, tx)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM customers WHERE id = $1`, id); err != nil {
		return "", false, err
	}
	return fmt.Sprintf("delete from customers where id=%d (a customer without orders)", id), true, nil
}

// fallback places a new order when a kind finds nothing to work on.
func (s *shop) fallback(ctx context.Context, tx pgx.Tx, err error) (string, bool, error) {
	if err != nil {
		return "", false, err
	}
	return s.newOrder(ctx, tx)
}

// traffic sends sample transactions until the duration ends, the traffic is
// stopped or ctx ends, printing each one and, every showEvery, the newest
// audit entries.
func (d *demo) traffic(ctx context.Context) error {
	d.shop = newShop(d.db, d.o.seed)
	rate := float64(time.Second) / float64(d.o.interval)
	if d.o.duration > 0 {
		d.say("▸ sample traffic for %s, %.0f transactions a second; every %s the newest audit entries\n", d.o.duration, rate, d.o.showEvery)
	} else {
		d.say("▸ sample traffic, %.0f transactions a second, until Ctrl-C; every %s the newest audit entries\n", rate, d.o.showEvery)
	}
	if err := d.loadColumns(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(d.o.interval)
	defer tick.Stop()
	show := time.NewTicker(d.o.showEvery)
	defer show.Stop()
	var end <-chan time.Time
	if d.o.duration > 0 {
		end = time.After(d.o.duration)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.o.stopTraffic:
			return nil
		case <-end:
			return nil
		case <-d.daemon.done:
			return d.daemonDied()
		case <-tick.C:
			line, err := d.shop.next(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("sample transaction %d failed: %w", d.shop.stats.txs, err)
			}
			d.say("  %s", clip(line, d.width()-2))
		case <-show.C:
			if err := d.showNew(ctx, 10); err != nil {
				return err
			}
		}
	}
}

func rowCount(n int64) string { return plural(int(n), "row") }
