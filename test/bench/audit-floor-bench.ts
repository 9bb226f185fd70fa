/**
 * npm run bench:audit-floor — what an audit entry costs PostgreSQL alone, without the app: the
 * floor under the ratio bench:audit measures.
 *
 * Starts a throw-away embedded PostgreSQL server, lets the real app migrate it and provision one
 * shared tenant, stops the app, and then drives the tenant's placement directly as the app's role,
 * with BENCH_FLOOR_CLIENTS (10) pipelined connections sending each transaction as the app sends a
 * project create (tenantTransactionPrologue, the INSERT, then COMMIT). Variants, measured in turns
 * whose order rotates every round:
 *   base   the project create alone (auditing switched off);
 *   noop   plus `SELECT 1` pipelined with the COMMIT: the cost of one more statement of any kind;
 *   tiny   plus a two-column row (an unindexed table): the cost of writing any row at all;
 *   entry  plus the audit entry's row alone (no sealing queue, never sealed): what the entry's
 *          fields, checks and indexes cost, without the chain's bookkeeping;
 *   audit  plus the app's own audit statement (src/audit/audit-statements.ts) pipelined with the
 *          COMMIT, and a sealer calling audit_seal() every 200 ms as the app's AuditSealer does.
 * And two prototypes of a cheaper chain (BENCH_FLOOR_VARIANTS=all), set up by this bench only:
 *   ids-rows   the entry's row alone, no queue: the sealer is handed the ids of committed entries
 *              (as an app could), and appends one chain row per entry, as shipped;
 *   ids-batch  the same, with one chain row per sealed batch (entry ids and hashes in arrays).
 * Each variant's transactions per second and the machine's CPU per transaction (from /proc/stat,
 * less this process), and the ratios to base within each round (their median is the result).
 * Options (environment): BENCH_FLOOR_CLIENTS, BENCH_FLOOR_SECONDS (4), BENCH_FLOOR_ROUNDS (7),
 * BENCH_FLOOR_VARIANTS (a comma-separated list, or all; base first).
 */
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { tenantTransactionPrologue } from '../../libs/postgres/index.js';
import { freePort, HttpClient } from '../../libs/testing/index.js';
import { INSERT_NEW } from '../../src/audit/audit-statements.js';
import { machineBusySeconds, median, mintSession, startApp, startBenchServer, stopApp } from './app-process.js';

const CLIENTS = Number(process.env.BENCH_FLOOR_CLIENTS ?? 10);
const SECONDS = Number(process.env.BENCH_FLOOR_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_FLOOR_ROUNDS ?? 7);
const SCHEMA = 'tenant_data';
const log = (msg: string) => process.stderr.write(`${msg}\n`);

const ALL = ['base', 'noop', 'tiny', 'entry', 'audit', 'ids-rows', 'ids-batch'] as const;
type Variant = (typeof ALL)[number];
const chosen = process.env.BENCH_FLOOR_VARIANTS ?? 'base,noop,tiny,entry,audit';
const VARIANTS: Variant[] = chosen === 'all' ? [...ALL] : (chosen.split(',').map((v) => v.trim()) as Variant[]);
for (const v of VARIANTS) if (!ALL.includes(v)) throw new Error(`BENCH_FLOOR_VARIANTS: unknown variant ${v} (known: ${ALL.join(', ')})`);
if (VARIANTS[0] !== 'base') throw new Error('BENCH_FLOOR_VARIANTS: base must come first (the ratios are to it)');

/**
 * The prototypes' chain (not the shipped one): a head per tenant, and either a row per entry or a
 * row per sealed batch. proto_seal() seals the given entries (committed ones; others are not found)
 * in the order they were written, as audit_seal() does, with the shipped canonical form and hash.
 */
const PROTOTYPE_SQL = (schema: string) => `
  SET search_path = ${schema};
  CREATE TABLE proto_heads (organization_id uuid PRIMARY KEY, seq bigint NOT NULL, hash bytea NOT NULL);
  CREATE TABLE proto_rows (organization_id uuid NOT NULL, seq bigint NOT NULL, entry_id uuid NOT NULL, prev_hash bytea NOT NULL, hash bytea NOT NULL,
    PRIMARY KEY (organization_id, seq), UNIQUE (organization_id, entry_id));
  CREATE TABLE proto_batches (organization_id uuid NOT NULL, first_seq bigint NOT NULL, entry_ids uuid[] NOT NULL, prev_hash bytea NOT NULL, hashes bytea[] NOT NULL,
    PRIMARY KEY (organization_id, first_seq));
  CREATE FUNCTION proto_seal(org uuid, ids uuid[], batch boolean) RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = ${schema} AS $f$
  DECLARE head_seq bigint; head_hash bytea; es uuid[]; hs bytea[];
  BEGIN
    INSERT INTO proto_heads VALUES (org, 0, '\\x') ON CONFLICT DO NOTHING;
    SELECT seq, hash INTO head_seq, head_hash FROM proto_heads WHERE organization_id = org FOR UPDATE;
    WITH entries AS (
      SELECT a, head_seq + row_number() OVER (ORDER BY a.created_at, a.id) AS seq FROM audit_log a WHERE a.organization_id = org AND a.id = ANY (ids)
    ), chained AS (
      SELECT seq, (a).id AS id, audit_chain_hash(head_hash, audit_canonical(a, seq)) OVER (ORDER BY seq) AS hash FROM entries
    )
    SELECT array_agg(id ORDER BY seq), array_agg(hash ORDER BY seq) INTO es, hs FROM chained;
    IF coalesce(cardinality(es), 0) = 0 THEN RETURN 0; END IF;
    IF batch THEN
      INSERT INTO proto_batches VALUES (org, head_seq + 1, es, head_hash, hs);
    ELSE
      INSERT INTO proto_rows SELECT org, head_seq + o, e, CASE WHEN o = 1 THEN head_hash ELSE hs[o - 1] END, h FROM unnest(es, hs) WITH ORDINALITY AS u(e, h, o);
    END IF;
    UPDATE proto_heads SET seq = head_seq + cardinality(es), hash = hs[cardinality(hs)] WHERE organization_id = org;
    RETURN cardinality(es);
  END $f$;
  GRANT EXECUTE ON FUNCTION proto_seal(uuid, uuid[], boolean) TO tenancy_app;
  RESET search_path`;

async function main(): Promise<void> {
  const server = await startBenchServer('audit-floor');
  const { env, secret, db } = server;
  try {
    // The real schema and a real tenant: the app migrates the server and provisions the tenant.
    const port = await freePort();
    const app = await startApp(port, env);
    let org: string;
    try {
      const adminId = (await db.query<{ id: string }>(`INSERT INTO control.users (id, email) VALUES (gen_random_uuid(), 'admin@bench.test') RETURNING id`)).rows[0].id;
      const admin = new HttpClient(`http://127.0.0.1:${port}`).as(await mintSession(db, secret, adminId, 'admin@bench.test'));
      const res = await admin.post('/tenants', { slug: 'bench-floor', name: 'floor', tier: 'shared', ownerEmail: 'owner@bench.test' });
      if (res.status !== 201) throw new Error(`tenant: ${res.status} ${JSON.stringify(res.body)}`);
      org = res.body.id;
    } finally {
      await stopApp(app);
    }
    // A row of any kind, for "tiny": unindexed, under the same row-level security as tenant tables.
    await db.query(`CREATE TABLE ${SCHEMA}.bench_floor_rows (organization_id uuid NOT NULL DEFAULT nullif(current_setting('app.current_org_id', true), '')::uuid, id uuid NOT NULL)`);
    await db.query(`ALTER TABLE ${SCHEMA}.bench_floor_rows ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY`);
    await db.query(`CREATE POLICY tenant_isolation ON ${SCHEMA}.bench_floor_rows USING (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid) WITH CHECK (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid)`);
    await db.query(`GRANT INSERT ON ${SCHEMA}.bench_floor_rows TO tenancy_app`);
    await db.query(PROTOTYPE_SQL(SCHEMA));

    const connection = { host: '127.0.0.1', port: server.port, user: 'tenancy_app', password: env.DATABASE_APP_PASSWORD, database: 'tenancy' };
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        const c = new pg.Client({ ...connection, pipeline: true } as pg.ClientConfig);
        await c.connect();
        return c;
      }),
    );
    const entryValues = () => [uuidv7(), 'user', uuidv7(), 'project.created', 'project', uuidv7(), JSON.stringify({ name: 'benchmark project' }), uuidv7(), '127.0.0.1', 'autocannon/8'];
    // The entry's own INSERT, taken from the app's statement (without the queue around it).
    const entryOnly = /INSERT INTO audit_log[^)]*\)\s*VALUES \([^)]*\)/.exec(INSERT_NEW.sql);
    if (!entryOnly) throw new Error("the app's audit statement (src/audit/audit-statements.ts) no longer has the INSERT INTO audit_log ... VALUES (...) this bench takes from it");
    const ENTRY_ONLY = entryOnly[0];
    // The prototypes' write: the entry's row alone; its id goes to the sealer once it committed.
    let handedOver: string[] = [];
    const entryHandedOver = async (c: pg.Client) => {
      const values = entryValues();
      await c.query({ name: 'floor_entry', text: ENTRY_ONLY, values });
      return () => handedOver.push(values[0]);
    };
    const prologue = tenantTransactionPrologue({ organizationId: org, schema: SCHEMA, readOnly: false });
    const extra: Record<Variant, ((c: pg.Client) => Promise<unknown>) | null> = {
      base: null,
      noop: (c) => c.query({ name: 'floor_noop', text: 'SELECT 1' }),
      tiny: (c) => c.query({ name: 'floor_tiny', text: 'INSERT INTO bench_floor_rows (id) VALUES ($1)', values: [uuidv7()] }),
      entry: (c) => c.query({ name: 'floor_entry', text: ENTRY_ONLY, values: entryValues() }),
      audit: (c) => c.query({ name: INSERT_NEW.name, text: INSERT_NEW.sql, values: entryValues() }),
      'ids-rows': (c) => entryHandedOver(c),
      'ids-batch': (c) => entryHandedOver(c),
    };
    // One project create, as the app sends it: the prologue pipelined with the INSERT, then the
    // deferred statement (if any) pipelined with the COMMIT.
    const transaction = async (c: pg.Client, v: Variant) => {
      c.query(prologue).catch(() => undefined);
      await c.query({
        name: 'floor_project',
        text: 'INSERT INTO projects (id, name, description) VALUES ($1, $2, $3) RETURNING id, name, description, created_at, updated_at',
        values: [uuidv7(), 'benchmark project', null],
      });
      const more = extra[v];
      const [after] = await Promise.all([more ? more(c) : null, c.query('COMMIT')]);
      if (typeof after === 'function') after();
    };
    // The app's AuditSealer: every 200 ms while entries are being written, one audit_seal() call
    // (or, for the prototypes, one proto_seal() call with the ids handed over since the last).
    let sealing: Variant | null = null;
    let stopped = false;
    const sealer = new pg.Client({ ...connection });
    await sealer.connect();
    const sealerDone = (async () => {
      while (!stopped) {
        await new Promise((r) => setTimeout(r, 200));
        if (!sealing) continue;
        await sealer.query('BEGIN');
        await sealer.query(`SELECT set_config('app.current_org_id', $1, true)`, [org]);
        if (sealing === 'audit') {
          await sealer.query(`SELECT ${SCHEMA}.audit_seal($1, 10000)`, [org]);
        } else {
          const ids = handedOver;
          handedOver = [];
          await sealer.query(`SELECT ${SCHEMA}.proto_seal($1, $2, $3)`, [org, ids, sealing === 'ids-batch']);
        }
        await sealer.query('COMMIT');
      }
    })();

    const turn = async (v: Variant, seconds: number) => {
      sealing = v === 'audit' || v === 'ids-rows' || v === 'ids-batch' ? v : null;
      const [machine0, self0, t0] = [machineBusySeconds(), process.cpuUsage(), performance.now()];
      const end = Date.now() + seconds * 1000;
      let n = 0;
      await Promise.all(
        clients.map(async (c) => {
          while (Date.now() < end) {
            await transaction(c, v);
            n++;
          }
        }),
      );
      const elapsed = (performance.now() - t0) / 1000;
      const self = process.cpuUsage(self0);
      const cpu = machineBusySeconds() - machine0 - (self.user + self.system) / 1e6;
      return { tps: n / elapsed, cpuUs: (cpu * 1e6) / n };
    };
    for (const v of VARIANTS) await turn(v, 1);
    const results = Object.fromEntries(VARIANTS.map((v) => [v, [] as Array<{ tps: number; cpuUs: number }>])) as Record<Variant, Array<{ tps: number; cpuUs: number }>>;
    for (let round = 1; round <= ROUNDS; round++) {
      for (let i = 0; i < VARIANTS.length; i++) {
        const v = VARIANTS[(i + round) % VARIANTS.length];
        const r = await turn(v, SECONDS);
        results[v].push(r);
        log(`round ${round} ${v}: ${r.tps.toFixed(0)} tx/s, ${r.cpuUs.toFixed(0)} µs CPU per transaction (PostgreSQL and the rest)`);
      }
    }
    stopped = true;
    await sealerDone;
    await sealer.query('BEGIN');
    await sealer.query(`SELECT set_config('app.current_org_id', $1, true)`, [org]);
    await sealer.query(`SELECT ${SCHEMA}.audit_seal($1, 1000000)`, [org]);
    await sealer.query('COMMIT');
    await sealer.end();
    await Promise.all(clients.map((c) => c.end()));
    const counts = await db.query<{ log: string; chain: string; queued: string }>(
      `SELECT (SELECT count(*) FROM ${SCHEMA}.audit_log WHERE organization_id = $1) AS log, (SELECT count(*) FROM ${SCHEMA}.audit_chain WHERE organization_id = $1) AS chain,
              (SELECT count(*) FROM ${SCHEMA}.audit_pending WHERE organization_id = $1) AS queued`,
      [org],
    );
    const { log: logged, chain, queued } = counts.rows[0];
    log(`audit_log: ${logged} entries (the "entry" variant's are never queued); on the chain: ${chain}; still queued after a last seal: ${queued}`);
    if (Number(queued) !== 0) throw new Error('the sealer left entries queued');

    const base = results.base;
    const label: Record<Variant, string> = {
      base: 'project create alone (auditing off)',
      noop: '+ `SELECT 1` with the COMMIT',
      tiny: '+ a two-column row',
      entry: "+ the audit entry's row alone (not queued, never sealed)",
      audit: '+ the audit entry, as the app writes it (sealed every 200 ms)',
      'ids-rows': 'prototype: the entry alone, sealed by the ids handed over, a chain row each',
      'ids-batch': 'prototype: the same, one chain row per sealed batch',
    };
    process.stdout.write(
      [
        `| PostgreSQL alone, ${CLIENTS} pipelined connections | tx/s (median) | ratio to base (median of the rounds' ratios) | CPU per tx (µs, median) |`,
        '|---|---:|---:|---:|',
        ...VARIANTS.map((v) => {
          const ratios = results[v].map((r, i) => r.tps / base[i].tps);
          return `| ${label[v]} | ${median(results[v].map((r) => r.tps)).toFixed(0)} | ${median(ratios).toFixed(3)}× | ${median(results[v].map((r) => r.cpuUs)).toFixed(0)} |`;
        }),
      ].join('\n') + '\n',
    );
  } finally {
    await server.stop();
  }
}

await main();
