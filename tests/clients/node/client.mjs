// node-postgres against the endpoint: node client.mjs HOST PORT
// Prints one JSON object of what it read; tests/test_pg_clients.py checks it.
import pg from "pg";

const [host, port] = process.argv.slice(2);
const config = { host, port: Number(port), user: "tester", database: "shop" };
const out = {};

const client = new pg.Client(config);
await client.connect();
try {
  // Simple protocol (no parameters) and extended (parameters, unnamed and named).
  out.version = (await client.query("SELECT version() AS v")).rows[0].v;
  out.simple = (await client.query("SELECT id, name, total, vip FROM customers ORDER BY id")).rows;
  out.typed = (await client.query("SELECT add_i64($1, $2) AS sum, $3::text AS t", [40, 2, "x"]))
    .rows[0];
  out.named = [];
  for (const id of [1, 2]) {
    const result = await client.query({
      name: "by-id",
      text: "SELECT name FROM customers WHERE id = $1",
      values: [id],
    });
    out.named.push(result.rows[0].name);
  }
  out.fields = (await client.query("SELECT 1 AS i, 2.5 AS f, 'a' AS s")).fields.map(
    (f) => f.dataTypeID,
  );
  // A transaction rolled back leaves nothing behind.
  await client.query("BEGIN");
  await client.query("INSERT INTO customers (id, name) VALUES ($1, $2)", [50, "gone"]);
  await client.query("ROLLBACK");
  out.after_rollback = Number((await client.query("SELECT count(*) AS n FROM customers")).rows[0].n);
  // An error comes back with its SQLSTATE and the session goes on.
  try {
    await client.query("SELECT * FROM no_such_table");
  } catch (error) {
    out.error = error.code;
  }
  out.after_error = (await client.query("SELECT 1 AS one")).rows[0].one;
} finally {
  await client.end();
}

// A pool hands connections back and forth.
const pool = new pg.Pool({ ...config, max: 2 });
const sums = await Promise.all(
  [1, 2, 3, 4].map(async (i) => (await pool.query("SELECT add_i64($1, 1) AS s", [i])).rows[0].s),
);
await pool.end();
out.pool = sums;

console.log(JSON.stringify(out));
