/**
 * npm run bench:export — tenant export throughput and memory, through the real app over HTTP.
 *
 * Starts a throw-away embedded PostgreSQL server and the app as a child process, provisions three
 * shared-tier tenants (the hardest case: their rows sit among other tenants' rows under RLS) and
 * seeds them as the owner role with INSERT ... SELECT generate_series:
 *   big: EXPORT_BENCH_ROWS rows (1,000,000; a quarter projects, the rest tasks),
 *   small: a tenth of that, neighbour: as many rows as big, never exported (it only has to be skipped).
 * Then, each EXPORT_BENCH_REPEAT (3) times, median reported:
 *   (a) baseline: COPY (SELECT the same columns of the same rows in key order) TO STDOUT, in one
 *       REPEATABLE READ transaction as the owner with the tenant set, drained to nowhere: the cost
 *       of reading the rows out of PostgreSQL at all; measured again right before every variant;
 *   (b) GET /tenants/:id/export of big, ndjson;  (c) the same, json;  (d) ndjson of small;
 *   each drained by an HTTP client that discards the bytes, with the app's RSS sampled every 20 ms;
 *   (e) the export's own COPY statements (JSON lines), drained by the bench without the app: how
 *   much of (b) is PostgreSQL rendering JSON rather than the app.
 * Ratios are to the baseline measured just before; memory is the app's RSS before and at its peak.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { ensureDatabase, ensurePlatformRoles, startEmbeddedCluster } from '../../libs/postgres/index.js';
import { copyRowsSql } from '../../src/lifecycle/export.service.js';
import { freePort, HttpClient } from '../../libs/testing/index.js';
import { mintSession, startApp, stopApp } from './app-process.js';

const ROWS = Number(process.env.EXPORT_BENCH_ROWS ?? 1_000_000);
const REPEAT = Number(process.env.EXPORT_BENCH_REPEAT ?? 3);
/** Extra node flags for the app process, e.g. --max-semi-space-size=2 to see what the young generation costs. */
const APP_NODE_FLAGS = (process.env.EXPORT_BENCH_APP_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const ADMIN = 'admin@bench.test';
const MB = 1_048_576;

const log = (msg: string) => process.stderr.write(`${msg}\n`);

interface Tenant {
  id: string;
  slug: string;
  rows: number;
}

interface Run {
  rows: number;
  bytes: number;
  ms: number;
  rssBeforeMb?: number;
  rssPeakMb?: number;
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'tenancy-export-bench-'));
  chmodSync(root, 0o755);
  const superPw = randomBytes(12).toString('hex');
  const ownerPw = randomBytes(12).toString('hex');
  const appPw = randomBytes(12).toString('hex');
  const jwtSecret = randomBytes(32).toString('hex');
  const dbPort = await freePort();
  log(`starting PostgreSQL on ${dbPort} (data in ${root})`);
  const cluster = await startEmbeddedCluster({ dataDir: join(root, 'pg'), port: dbPort, password: superPw, fast: true });
  const su = new pg.Client({ host: '127.0.0.1', port: dbPort, user: 'postgres', password: superPw, database: 'postgres' });
  await su.connect();
  await ensurePlatformRoles(su, { ownerUser: 'tenancy_owner', ownerPassword: ownerPw, appUser: 'tenancy_app', appPassword: appPw });
  await ensureDatabase(su, 'tenancy', 'tenancy_owner');
  await su.end();
  const owner = () => new pg.Client({ host: '127.0.0.1', port: dbPort, user: 'tenancy_owner', password: ownerPw, database: 'tenancy' });
  let app: ChildProcess | undefined;
  try {
    const appPort = await freePort();
    app = await startApp(
      appPort,
      {
      DATABASE_URL: `postgres://tenancy_owner:${ownerPw}@127.0.0.1:${dbPort}/tenancy`,
      DATABASE_APP_PASSWORD: appPw,
      PLATFORM_ADMIN_EMAILS: ADMIN,
      JWT_SECRET: jwtSecret,
      LOG_LEVEL: 'warn',
      NODE_ENV: 'production',
      DEV_LOGIN_ENABLED: 'false',
      },
      APP_NODE_FLAGS,
    );
    const token = await adminToken(owner(), jwtSecret);
    const api = new HttpClient(`http://127.0.0.1:${appPort}`).as(token);
    const big = await provision(api, 'big', ROWS);
    const small = await provision(api, 'small', Math.round(ROWS / 10));
    const neighbour = await provision(api, 'neighbour', ROWS);
    for (const t of [big, small, neighbour]) await seed(owner(), t);
    const c = owner();
    await c.connect();
    await c.query('VACUUM ANALYZE tenant_data.projects, tenant_data.tasks');
    await c.end();

    const results = new Map<string, Run[]>();
    const add = (name: string, r: Run) => results.set(name, [...(results.get(name) ?? []), r]);
    const variants: Array<{ name: string; tenant: Tenant; run: () => Promise<Run> }> = [
      { name: `(b) export ndjson, ${big.rows} rows`, tenant: big, run: () => download(appPort, token, big, 'ndjson', app!.pid!) },
      { name: `(c) export json, ${big.rows} rows`, tenant: big, run: () => download(appPort, token, big, 'json', app!.pid!) },
      { name: `(d) export ndjson, ${small.rows} rows`, tenant: small, run: () => download(appPort, token, small, 'ndjson', app!.pid!) },
      { name: `(e) the export's COPY alone (no app), ${big.rows} rows`, tenant: big, run: () => baseline(owner(), big, true) },
    ];
    const ratios = new Map<string, number[]>();
    // Warm-up: JIT, pools, caches.
    await baseline(owner(), small);
    await download(appPort, token, small, 'ndjson', app.pid!);
    for (let i = 0; i < REPEAT; i++) {
      for (const v of variants) {
        const before = await baseline(owner(), v.tenant);
        add(`(a) baseline COPY, ${v.tenant.rows} rows`, before);
        const r = await v.run();
        add(v.name, r);
        ratios.set(v.name, [...(ratios.get(v.name) ?? []), r.ms / before.ms]);
        const rss = r.rssPeakMb === undefined ? '' : `, app RSS ${r.rssBeforeMb!.toFixed(0)} → ${r.rssPeakMb.toFixed(0)} MB`;
        log(`  ${v.name}: ${(r.rows / (r.ms / 1000)).toFixed(0)} rows/s${rss} (baseline just before: ${(before.rows / (before.ms / 1000)).toFixed(0)} rows/s)`);
      }
    }
    report(results, ratios);
  } finally {
    if (app) await stopApp(app);
    await cluster.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

async function adminToken(c: pg.Client, secret: string): Promise<string> {
  await c.connect();
  try {
    const id = (await c.query(`INSERT INTO control.users (id, email) VALUES (gen_random_uuid(), $1) RETURNING id`, [ADMIN])).rows[0].id as string;
    return await mintSession(c, secret, id, ADMIN);
  } finally {
    await c.end();
  }
}

async function provision(api: HttpClient, name: string, rows: number): Promise<Tenant> {
  const slug = `bench-${name}`;
  const res = await api.post('/tenants', { slug, name: slug, tier: 'shared', ownerEmail: `owner@${slug}.test` });
  if (res.status !== 201) throw new Error(`provisioning ${slug}: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.id, slug, rows };
}

/** As the owner role with the tenant set (RLS applies, organization_id comes from its default). */
async function seed(c: pg.Client, t: Tenant): Promise<void> {
  const started = Date.now();
  const projects = Math.round(t.rows / 4);
  await c.connect();
  await c.query(`SET search_path = tenant_data; SET app.current_org_id = '${t.id}'`);
  await c.query(
    `INSERT INTO projects (id, name, description)
     SELECT gen_random_uuid(), 'project ' || g, 'description of project ' || g || ': ' || md5(g::text) || md5((g + 1)::text)
       FROM generate_series(1, ${projects}) g`,
  );
  await c.query(
    `INSERT INTO tasks (id, project_id, title, status)
     SELECT gen_random_uuid(), p.id, 'task ' || g || ' of ' || p.name, (ARRAY['todo', 'doing', 'done'])[1 + g % 3]
       FROM projects p, generate_series(1, 3) g LIMIT ${t.rows - projects}`,
  );
  await c.end();
  log(`seeded ${t.slug}: ${t.rows} rows in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

const COLUMNS: Record<string, string[]> = {
  projects: ['created_at', 'description', 'id', 'name', 'updated_at'],
  tasks: ['created_at', 'id', 'project_id', 'status', 'title', 'updated_at'],
};

/**
 * The same rows, in the same order, through the same RLS, drained to nowhere by the bench itself:
 * as plain COPY text (the baseline), or as the export's own COPY of JSON lines (what PostgreSQL's
 * JSON rendering costs, without the app).
 */
async function baseline(c: pg.Client, t: Tenant, json = false): Promise<Run> {
  await c.connect();
  const started = performance.now();
  let bytes = 0;
  let rows = 0;
  await c.query(`SET search_path = tenant_data; SET app.current_org_id = '${t.id}'; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`);
  for (const table of ['projects', 'tasks']) {
    const sql = json
      ? copyRowsSql({ name: table, key: 'id', columns: COLUMNS[table] }, t.id)
      : `COPY (SELECT ${COLUMNS[table].join(', ')} FROM ${table} WHERE organization_id = '${t.id}' ORDER BY id) TO STDOUT`;
    const copy = c.query(copyTo(sql));
    await pipeline(copy, new Writable({ write: (chunk: Buffer, _e, done) => ((bytes += chunk.length), done()) }));
    rows += copy.rowCount;
  }
  await c.query('COMMIT');
  const ms = performance.now() - started;
  await c.end();
  if (rows !== t.rows) throw new Error(`baseline read ${rows} rows of ${t.slug}, expected ${t.rows}`);
  return { rows, bytes, ms };
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** GET /tenants/:id/export drained by a client that keeps nothing, with the app's RSS sampled meanwhile. */
async function download(port: number, token: string, t: Tenant, format: string, appPid: number): Promise<Run> {
  const rssBeforeMb = rssMb(appPid);
  let rssPeakMb = rssBeforeMb;
  const sampler = setInterval(() => (rssPeakMb = Math.max(rssPeakMb, rssMb(appPid))), 20);
  const started = performance.now();
  let bytes = 0;
  let lines = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: `/tenants/${t.id}/export?format=${format}`, headers: { authorization: `Bearer ${token}` } }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`export of ${t.slug}: HTTP ${res.statusCode}`));
        let last = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
          last = chunk[chunk.length - 1];
        });
        res.on('end', () => (last === 10 ? resolve() : reject(new Error('the export did not end with a newline'))));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
  } finally {
    clearInterval(sampler);
  }
  const ms = performance.now() - started;
  rssPeakMb = Math.max(rssPeakMb, rssMb(appPid));
  // ndjson: header + rows + manifest; json: 2 + rows + 2 per table (open, close) + 2 lines, for
  // the three tenant tables (projects, tasks, and the audit log, empty here: rows are seeded by SQL).
  const rows = format === 'ndjson' ? lines - 2 : lines - 4 - 2 * 3;
  if (rows !== t.rows) throw new Error(`export of ${t.slug} (${format}) had ${rows} rows, expected ${t.rows}`);
  return { rows, bytes, ms, rssBeforeMb, rssPeakMb };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function report(results: Map<string, Run[]>, ratios: Map<string, number[]>): void {
  const lines = [
    `| variant | rows | MB | s (median of ${REPEAT}) | rows/s | MB/s | time vs (a) just before | app RSS before → peak (MB) |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const [name, runs] of [...results.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const ms = median(runs.map((r) => r.ms));
    const { rows, bytes } = runs[0];
    const ratio = ratios.get(name);
    const rss = runs[0].rssPeakMb === undefined ? '' : `${median(runs.map((r) => r.rssBeforeMb!)).toFixed(0)} → ${Math.max(...runs.map((r) => r.rssPeakMb!)).toFixed(0)}`;
    lines.push(
      `| ${name} | ${rows} | ${(bytes / MB).toFixed(1)} | ${(ms / 1000).toFixed(2)} | ${(rows / (ms / 1000)).toFixed(0)} | ${(bytes / MB / (ms / 1000)).toFixed(1)} | ` +
        `${ratio ? `${median(ratio).toFixed(2)}x` : ''} | ${rss} |`,
    );
  }
  process.stdout.write(`\n${lines.join('\n')}\n\n(peak RSS over all runs; ratio = export time / baseline COPY time of the same rows, median)\n`);
}

main().catch((err) => {
  process.stderr.write(`export bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
