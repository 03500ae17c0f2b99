// A node-postgres client for maskgate's integration tests (tests/integration/clients/test_node_pg.py).
//
// Usage: node driver.js SCENARIO PORT USER PASSWORD [ARG]
//
// Runs one scenario as a Node application would and prints one JSON object on stdout: rows,
// notices, error codes and messages. It asserts nothing: the Python test does.
"use strict";

const fs = require("fs");
const { Client } = require("pg");
const Cursor = require("pg-cursor");

const [scenario, port, user, password, arg] = process.argv.slice(2);

function client(extra = {}) {
  return new Client({
    host: "127.0.0.1",
    port: Number(port),
    user,
    password,
    database: "crm",
    ssl: false,
    connectionTimeoutMillis: 10000,
    ...extra,
  });
}

function error(e) {
  return { code: e.code, message: e.message, severity: e.severity };
}

async function attempt(c, q) {
  try {
    const r = await c.query(q);
    return { rows: r.rows, command: r.command, rowCount: r.rowCount };
  } catch (e) {
    return { error: error(e) };
  }
}

function onNotices(c) {
  const notices = [];
  c.on("notice", (n) => notices.push({ code: n.code, message: n.message }));
  return notices;
}

const scenarios = {
  async connect() {
    const c = client();
    await c.connect();
    try {
      const r = await c.query("SHOW server_version");
      const wrong = client({ password: "not-" + password });
      let refused = null;
      try {
        await wrong.connect();
        await wrong.end();
      } catch (e) {
        refused = error(e);
      }
      return { server_version: r.rows[0].server_version, wrong_password: refused };
    } finally {
      await c.end();
    }
  },

  // No parameters: node-postgres sends a simple Query.
  async select() {
    const c = client();
    await c.connect();
    const notices = onNotices(c);
    try {
      const masked = await c.query(arg);
      const many = await c.query("SELECT id, caller FROM call_records");
      return {
        fields: masked.fields.map((f) => f.name),
        rows: masked.rows,
        many: many.rows.length,
        many_rowCount: many.rowCount,
        notices,
      };
    } finally {
      await c.end();
    }
  },

  // Parameters (unnamed statement) and a named prepared statement: Parse/Bind/Describe/Execute/Sync.
  async params() {
    const c = client();
    await c.connect();
    const notices = onNotices(c);
    try {
      const ids = JSON.parse(arg);
      const one = await c.query("SELECT id, name, phone, id_card, branch_id FROM customers WHERE id = $1", [ids[0]]);
      const named = [];
      for (const id of ids) {
        const r = await c.query({
          name: "customer_by_id",
          text: "SELECT id, name, phone, id_card, branch_id FROM customers WHERE id = $1",
          values: [id],
        });
        named.push(r.rows);
      }
      const limited = await c.query("SELECT id, caller FROM call_records WHERE duration_s >= $1", [0]);
      return { one: one.rows, named, limited: limited.rows.length, notices };
    } finally {
      await c.end();
    }
  },

  // pg-cursor: one portal, Execute(rows=n) + Flush per read, Sync only at the end.
  async cursor() {
    const c = client();
    await c.connect();
    const notices = onNotices(c);
    try {
      const size = Number(arg);
      const cursor = c.query(new Cursor("SELECT id, caller FROM call_records WHERE id > $1 ORDER BY id", [0]));
      const batches = [];
      const rows = [];
      let err = null;
      try {
        for (;;) {
          const batch = await cursor.read(size);
          if (batch.length === 0) break;
          batches.push(batch.length);
          rows.push(...batch);
          if (batches.length > 1000) throw new Error("cursor never ended");
        }
        await cursor.close();
      } catch (e) {
        err = error(e);
      }
      const after = await attempt(c, "SELECT 1 AS one");
      return { batches, rows, error: err, notices, after };
    } finally {
      await c.end();
    }
  },

  async refused() {
    const c = client();
    await c.connect();
    try {
      const out = [];
      out.push(await attempt(c, "SELECT bank_card FROM customers"));
      out.push(await attempt(c, "SELECT 1 AS one"));
      out.push(await attempt(c, { text: "SELECT bank_card FROM customers WHERE id = $1", values: [1] }));
      out.push(await attempt(c, { text: "SELECT $1::int AS two", values: [2] }));
      out.push(await attempt(c, "BEGIN"));
      out.push(await attempt(c, "SELECT * FROM audit_trail"));
      out.push(await attempt(c, "SELECT 1 AS one"));
      out.push(await attempt(c, "ROLLBACK"));
      out.push(await attempt(c, "SELECT 3 AS three"));
      return { results: out };
    } finally {
      await c.end();
    }
  },

  async tls() {
    const [ca, otherCa] = arg.split(",");
    const modes = {
      // sslmode=require: encrypted, certificate not checked.
      require: { rejectUnauthorized: false },
      // The served certificate, checked against the CA the test made (the host name is not in it).
      "verify-ca": { ca: fs.readFileSync(ca), checkServerIdentity: () => undefined },
      // Another CA: the handshake must fail, or the checks above prove nothing.
      "wrong-ca": { ca: fs.readFileSync(otherCa), checkServerIdentity: () => undefined },
    };
    const out = {};
    for (const [mode, ssl] of Object.entries(modes)) {
      const c = client({ ssl });
      try {
        await c.connect();
        const r = await c.query("SELECT id, caller FROM call_records ORDER BY id LIMIT 3");
        out[mode] = { rows: r.rows, encrypted: Boolean(c.connection.stream.encrypted) };
        await c.end();
      } catch (e) {
        out[mode] = { error: error(e) };
      }
    }
    return { modes: out };
  },
};

(async () => {
  let result;
  try {
    result = await scenarios[scenario]();
  } catch (e) {
    result = { uncaught: error(e) };
  }
  process.stdout.write(JSON.stringify(result) + "\n");
})();
