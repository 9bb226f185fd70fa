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
 * Each variant's transactions per second and the machine's CPU per transaction (from /proc/stat,
 * less this process), and the ratios to base within each round (their median is the result).
 * Options (environment): BENCH_FLOOR_CLIENTS, BENCH_FLOOR_SECONDS (4), BENCH_FLOOR_ROUNDS (7).
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

type Variant = 'base' | 'noop' | 'tiny' | 'entry' | 'audit';
const VARIANTS: Variant[] = ['base', 'noop', 'tiny', 'entry', 'audit'];

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
    const ENTRY_ONLY = /INSERT INTO audit_log[^)]*\)\s*VALUES \([^)]*\)/.exec(INSERT_NEW.sql)![0];
    const prologue = tenantTransactionPrologue({ organizationId: org, schema: SCHEMA, readOnly: false });
    const extra: Record<Variant, ((c: pg.Client) => Promise<unknown>) | null> = {
      base: null,
      noop: (c) => c.query({ name: 'floor_noop', text: 'SELECT 1' }),
      tiny: (c) => c.query({ name: 'floor_tiny', text: 'INSERT INTO bench_floor_rows (id) VALUES ($1)', values: [uuidv7()] }),
      entry: (c) => c.query({ name: 'floor_entry', text: ENTRY_ONLY, values: entryValues() }),
      audit: (c) => c.query({ name: INSERT_NEW.name, text: INSERT_NEW.sql, values: entryValues() }),
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
      await Promise.all([more ? more(c) : null, c.query('COMMIT')]);
    };
    // The app's AuditSealer: every 200 ms while entries are being written, one audit_seal() call.
    let sealing = false;
    let stopped = false;
    const sealer = new pg.Client({ ...connection });
    await sealer.connect();
    const sealerDone = (async () => {
      while (!stopped) {
        await new Promise((r) => setTimeout(r, 200));
        if (!sealing) continue;
        await sealer.query('BEGIN');
        await sealer.query(`SELECT set_config('app.current_org_id', $1, true)`, [org]);
        await sealer.query(`SELECT ${SCHEMA}.audit_seal($1, 10000)`, [org]);
        await sealer.query('COMMIT');
      }
    })();

    const turn = async (v: Variant, seconds: number) => {
      sealing = v === 'audit';
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
