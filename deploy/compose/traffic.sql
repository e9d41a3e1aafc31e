-- Sample traffic for the demo of deploy/compose.yaml: the traffic service
-- runs this file as the role app every few seconds, so that the trail, the
-- metrics and the dashboard have something to show.

-- A request of a signed-in customer: the application says who is acting.
BEGIN;
SELECT audit.set_context(
    actor_id   => c.id::text,
    actor      => c.email,
    ip         => '203.0.113.' || (1 + floor(random() * 250))::int,
    user_agent => 'walscribe-demo',
    request_id => gen_random_uuid()::text)
  FROM (SELECT id, email FROM customers ORDER BY random() LIMIT 1) c;
INSERT INTO orders (customer_id, total)
    SELECT current_setting('audit.actor_id')::bigint, round((10 + random() * 300)::numeric, 2);
UPDATE products SET stock = stock - 1, updated_at = now()
 WHERE sku = (SELECT sku FROM products ORDER BY random() LIMIT 1);
COMMIT;

-- A background job with no actor: it counts against context coverage.
UPDATE orders SET status = 'shipped', shipped_at = now(), updated_at = now()
 WHERE id = (SELECT min(id) FROM orders WHERE status = 'new');

-- Anonymous page views, on a table without a primary key.
INSERT INTO page_views (path) SELECT '/products/' || sku FROM products ORDER BY random() LIMIT 2;
