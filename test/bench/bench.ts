/**
 * npm run bench — what tenancy costs, measured through the full stack with autocannon.
 *
 * Starts two throw-away embedded PostgreSQL servers, runs the real app as a child process,
 * provisions tenants of every tier (1,000+ in all) and measures "list 20 projects" for:
 *   (a) the same endpoint with no tenancy (baseline: plain query, explicit WHERE, no transaction)
 *   (b) a shared tenant, (c) a schema tenant, (d) a dedicated tenant,
 *   (e) random tenants over all of them,
 * each as a ratio to (a) measured again right before it, once per provider scope (singleton,
 * durable, request).
 * Options (environment): BENCH_TENANTS (1000), BENCH_DURATION (8 s), BENCH_CONNECTIONS (32),
 * BENCH_SCOPES ("singleton,durable,request"), BENCH_MAX_CONNECTIONS (80).
 */
import autocannon from 'autocannon';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { fromRoot } from '../../config/paths.js';
import { ensureDatabase, ensurePlatformRoles, startEmbeddedCluster, tenantObjectName } from '../../libs/postgres/index.js';
import { freePort, HttpClient } from '../../libs/testing/index.js';
import { mintSession, startApp, stopApp } from './app-process.js';

const TENANTS = Number(process.env.BENCH_TENANTS ?? 1000);
const DURATION = Number(process.env.BENCH_DURATION ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const SCOPES = (process.env.BENCH_SCOPES ?? 'singleton,durable,request').split(',');
const MAX_CONNECTIONS = Number(process.env.BENCH_MAX_CONNECTIONS ?? 80); // the app's default DB_MAX_CONNECTIONS
/** Letters of the variants to run (default all: abcde); without (a) there are no ratios (for profiling one variant). */
const ONLY = process.env.BENCH_ONLY ?? 'abcde';
/** Extra node flags for the app process, e.g. --cpu-prof to profile one variant. */
const APP_NODE_FLAGS = (process.env.BENCH_APP_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const PROJECTS_PER_TENANT = 40;
const SCHEMA_TENANTS = Math.max(1, Math.round(TENANTS * 0.05));
const DEDICATED_TENANTS = Math.max(1, Math.round(TENANTS * 0.015));
const BENCH_USER = 'bench@bench.test';

const log = (msg: string) => process.stderr.write(`${msg}\n`);

interface Tenant {
  id: string;
  slug: string;
  tier: 'shared' | 'schema' | 'dedicated';
}

interface Row {
  scope: string;
  appCpuMsPerKReq?: number;
  dbCpuMsPerKReq?: number;
  variant: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  ratio?: number;
  peakConnections?: number;
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'tenancy-bench-'));
  chmodSync(root, 0o755);
  const superPw = randomBytes(12).toString('hex');
  const ownerPw = randomBytes(12).toString('hex');
  const appPw = randomBytes(12).toString('hex');
  const benchPw = randomBytes(12).toString('hex');
  const ports = [await freePort(), await freePort()];
  log(`starting PostgreSQL on ${ports.join(' and ')} (data in ${root})`);
  const clusters = await Promise.all(
    ports.map((port, i) => startEmbeddedCluster({ dataDir: join(root, `pg${i}`), port, password: superPw, maxConnections: 300 })),
  );
  const su = (port: number, database = 'postgres') =>
    new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: superPw, database });
  for (const port of ports) {
    const c = su(port);
    await c.connect();
    await ensurePlatformRoles(c, { ownerUser: 'tenancy_owner', ownerPassword: ownerPw, appUser: 'tenancy_app', appPassword: appPw });
    if (port === ports[0]) {
      await ensureDatabase(c, 'tenancy', 'tenancy_owner');
      // The baseline's role: no tenancy at all, so it must see past RLS.
      await c.query(`CREATE ROLE bench_baseline LOGIN BYPASSRLS PASSWORD '${benchPw}'`);
    }
    await c.end();
  }
  const ownerUrl = (port: number, db: string) => `postgres://tenancy_owner:${ownerPw}@127.0.0.1:${port}/${db}`;
  const results: Row[] = [];
  let app: ChildProcess | undefined;
  try {
    let tenants: Tenant[] = [];
    for (const [i, scope] of SCOPES.entries()) {
      const port = await freePort();
      const env: Record<string, string> = {
        DATABASE_URL: ownerUrl(ports[0], 'tenancy'),
        DATABASE_SECONDARY_URL: ownerUrl(ports[1], 'postgres'),
        DATABASE_APP_PASSWORD: appPw,
        BENCH_BASELINE_DATABASE_URL: `postgres://bench_baseline:${benchPw}@127.0.0.1:${ports[0]}/tenancy`,
        TENANT_PROVIDER_SCOPE: scope,
        DB_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
        PLATFORM_ADMIN_EMAILS: 'admin@bench.test',
        JWT_SECRET: randomBytes(32).toString('hex'),
        LOG_LEVEL: 'warn',
        NODE_ENV: 'production',
        DEV_LOGIN_ENABLED: 'false',
        // What tenancy costs, without plans (their cost is bench:billing's subject).
        BENCH_SKIP_BILLING: 'true',
      };
      app = await startApp(port, env, APP_NODE_FLAGS);
      const http = new HttpClient(`http://127.0.0.1:${port}`);
      if (i === 0) {
        // Production mode has no development login: the bench mints its tokens with the same secret.
        tenants = await provision(http, env.JWT_SECRET, ports, superPw);
        await grantBaseline(su(ports[0], 'tenancy'));
      }
      const token = await mint(env.JWT_SECRET, BENCH_USER, ports, superPw);
      await runScope(scope, port, token, tenants, ports, superPw, results, app.pid!);
      await stopApp(app);
      app = undefined;
    }
  } finally {
    if (app) await stopApp(app);
    await Promise.all(clusters.map((c) => c.stop()));
    rmSync(root, { recursive: true, force: true });
  }
  report(results);
}

async function mint(secret: string, email: string, ports: number[], superPw: string): Promise<string> {
  const db = new pg.Client({ host: '127.0.0.1', port: ports[0], user: 'postgres', password: superPw, database: 'tenancy' });
  await db.connect();
  try {
    return await mintSession(db, secret, benchUserId!, email);
  } finally {
    await db.end();
  }
}

let benchUserId: string | undefined;

async function provision(http: HttpClient, secret: string, ports: number[], superPw: string): Promise<Tenant[]> {
  const adminDb = new pg.Client({ host: '127.0.0.1', port: ports[0], user: 'postgres', password: superPw, database: 'tenancy' });
  await adminDb.connect();
  // The platform admin exists once it has a user row; tokens carry the user id.
  const adminId = (
    await adminDb.query(
      `INSERT INTO control.users (id, email) VALUES (gen_random_uuid(), 'admin@bench.test') RETURNING id`,
    )
  ).rows[0].id as string;
  const admin = http.as(await mintSession(adminDb, secret, adminId, 'admin@bench.test'));
  const plan: Array<Tenant['tier']> = [
    ...Array<Tenant['tier']>(DEDICATED_TENANTS).fill('dedicated'),
    ...Array<Tenant['tier']>(SCHEMA_TENANTS).fill('schema'),
    ...Array<Tenant['tier']>(TENANTS - SCHEMA_TENANTS - DEDICATED_TENANTS).fill('shared'),
  ];
  const tenants: Tenant[] = [];
  const started = Date.now();
  let next = 0;
  const worker = async () => {
    while (next < plan.length) {
      const i = next++;
      const tier = plan[i];
      const slug = `bench-${tier}-${i}`;
      const res = await admin.post('/tenants', { slug, name: slug, tier, ownerEmail: BENCH_USER });
      if (res.status !== 201) throw new Error(`provisioning ${slug}: ${res.status} ${JSON.stringify(res.body)}`);
      tenants.push({ id: res.body.id, slug, tier });
      if (tenants.length % 100 === 0) log(`  provisioned ${tenants.length}/${plan.length} tenants (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  benchUserId = (await adminDb.query(`SELECT id FROM control.users WHERE email = $1`, [BENCH_USER])).rows[0].id;
  await adminDb.end();
  log(`provisioned ${tenants.length} tenants in ${((Date.now() - started) / 1000).toFixed(1)} s; seeding ${PROJECTS_PER_TENANT} projects each`);
  await seed(tenants, ports, superPw);
  return tenants;
}

/** Bulk rows straight into each placement (seeding is not what is measured). */
async function seed(tenants: Tenant[], ports: number[], superPw: string): Promise<void> {
  const insert = (schema: string) =>
    `INSERT INTO "${schema}".projects (organization_id, id, name)
     SELECT t.id, gen_random_uuid(), 'project ' || g FROM unnest($1::uuid[]) AS t(id), generate_series(1, ${PROJECTS_PER_TENANT}) g`;
  const primary = new pg.Client({ host: '127.0.0.1', port: ports[0], user: 'postgres', password: superPw, database: 'tenancy' });
  await primary.connect();
  await primary.query(insert('tenant_data'), [tenants.filter((t) => t.tier === 'shared').map((t) => t.id)]);
  for (const t of tenants.filter((x) => x.tier === 'schema')) await primary.query(insert(tenantObjectName(t.id)), [[t.id]]);
  await primary.query('VACUUM ANALYZE');
  await primary.end();
  for (const t of tenants.filter((x) => x.tier === 'dedicated')) {
    const c = new pg.Client({ host: '127.0.0.1', port: ports[1], user: 'postgres', password: superPw, database: tenantObjectName(t.id) });
    await c.connect();
    await c.query(insert('tenant_data'), [[t.id]]);
    await c.query('VACUUM ANALYZE');
    await c.end();
  }
}

async function grantBaseline(c: pg.Client): Promise<void> {
  await c.connect();
  await c.query('GRANT USAGE ON SCHEMA tenant_data TO bench_baseline');
  await c.query('GRANT SELECT ON tenant_data.projects TO bench_baseline');
  await c.end();
}

/** CPU time (ms) used so far by the app process and by all PostgreSQL processes (Linux /proc). */
function cpuTimes(appPid: number): { app: number; db: number } {
  const ticks = (pid: string) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime + stime, plus cutime + cstime: the postmaster accumulates the backends it reaped,
      // so connections that close during a run still count.
      const t = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
      return { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), t };
    } catch {
      return { comm: '', t: 0 };
    }
  };
  let db = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    const p = ticks(pid);
    if (p.comm === 'postgres') db += p.t;
  }
  const self = ticks(String(appPid));
  return { app: self.t * 10, db: db * 10 };
}

async function peakConnections(ports: number[], superPw: string, stop: () => boolean): Promise<number> {
  const clients = ports.map((port) => new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: superPw, database: 'postgres' }));
  await Promise.all(clients.map((c) => c.connect()));
  let peak = 0;
  while (!stop()) {
    const counts = await Promise.all(
      clients.map(async (c) => Number((await c.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE usename = 'tenancy_app' AND application_name = 'tenancy-app'`)).rows[0].n)),
    );
    peak = Math.max(peak, counts.reduce((a, b) => a + b, 0));
    await new Promise((r) => setTimeout(r, 100));
  }
  await Promise.all(clients.map((c) => c.end()));
  return peak;
}

async function runScope(
  scope: string,
  port: number,
  token: string,
  tenants: Tenant[],
  ports: number[],
  superPw: string,
  results: Row[],
  appPid: number,
): Promise<void> {
  const base = `http://127.0.0.1:${port}`;
  const headers = { authorization: `Bearer ${token}` };
  const pick = (tier: Tenant['tier']) => tenants.find((t) => t.tier === tier)!;
  const shared = pick('shared');
  const variants: Array<{ name: string; path?: string; random?: boolean }> = [
    { name: '(a) baseline, no tenancy', path: `/bench/baseline/projects?org=${shared.id}&limit=20` },
    { name: '(b) shared tier', path: `/orgs/${shared.slug}/projects?limit=20` },
    { name: '(c) schema tier', path: `/orgs/${pick('schema').slug}/projects?limit=20` },
    { name: '(d) dedicated tier', path: `/orgs/${pick('dedicated').slug}/projects?limit=20` },
    { name: `(e) random of ${tenants.length} tenants`, random: true },
  ];
  const selected = variants.filter((x, i) => i === 0 || ONLY.includes(x.name[1]));
  // Warm every path (routing cache, pools, JIT) before measuring.
  for (const v of selected.filter((x) => x.path)) await cannon(base + v.path!, headers, 2);
  if (selected.some((x) => x.random)) await cannon(base, headers, 3, tenants);
  const measure = async (v: (typeof variants)[number]): Promise<Row> => {
    log(`[${scope}] ${v.name}: ${DURATION} s x ${CONNECTIONS} connections`);
    let done = false;
    const peak = v.random ? peakConnections(ports, superPw, () => done) : Promise.resolve(undefined);
    const cpuBefore = cpuTimes(appPid);
    const r = v.random ? await cannon(base, headers, DURATION, tenants) : await cannon(base + v.path!, headers, DURATION);
    const cpuAfter = cpuTimes(appPid);
    done = true;
    const kreq = r.requests.total / 1000;
    return {
      scope,
      variant: v.name,
      rps: r.requests.average,
      p50: r.latency.p50,
      p99: r.latency.p99,
      errors: r.non2xx + r.errors,
      peakConnections: await peak,
      appCpuMsPerKReq: (cpuAfter.app - cpuBefore.app) / kreq,
      dbCpuMsPerKReq: (cpuAfter.db - cpuBefore.db) / kreq,
    };
  };
  // The baseline is measured again right before each variant, and each ratio is taken against
  // that neighbour, so drift of a shared machine over the run does not tilt the ratios.
  const [baselineVariant, ...others] = variants;
  const baselines: Row[] = [];
  const rows: Row[] = [];
  for (const v of others.filter((x) => ONLY.includes(x.name[1]))) {
    const before = ONLY.includes('a') ? await measure(baselineVariant) : undefined;
    const row = await measure(v);
    if (before) {
      baselines.push(before);
      row.ratio = row.rps / before.rps;
    }
    rows.push(row);
  }
  if (ONLY.includes('a') && baselines.length === 0) baselines.push(await measure(baselineVariant));
  if (baselines.length) {
    const mean = (f: (r: Row) => number) => baselines.reduce((a, r) => a + f(r), 0) / baselines.length;
    results.push({
      ...baselines[0],
      variant: `${baselineVariant.name} (mean of ${baselines.length})`,
      rps: mean((r) => r.rps),
      p50: mean((r) => r.p50),
      p99: mean((r) => r.p99),
      errors: baselines.reduce((a, r) => a + r.errors, 0),
      appCpuMsPerKReq: mean((r) => r.appCpuMsPerKReq!),
      dbCpuMsPerKReq: mean((r) => r.dbCpuMsPerKReq!),
      ratio: 1,
    });
  }
  results.push(...rows);
}

function cannon(url: string, headers: Record<string, string>, duration: number, tenants?: Tenant[]): Promise<autocannon.Result> {
  return autocannon({
    url,
    connections: CONNECTIONS,
    duration,
    headers,
    requests: tenants
      ? [
          {
            setupRequest: (req) => {
              const t = tenants[Math.floor(Math.random() * tenants.length)];
              return { ...req, path: `/orgs/${t.slug}/projects?limit=20` };
            },
          },
        ]
      : undefined,
  });
}

function report(rows: Row[]): void {
  const lines = [
    '| scope | variant | req/s | p50 ms | p99 ms | non-2xx/errors | ratio to (a) just before | app CPU ms/1k req | PostgreSQL CPU ms/1k req | peak app connections |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.scope} | ${r.variant} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.errors} | ${r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}x`} | ${r.appCpuMsPerKReq!.toFixed(0)} | ${r.dbCpuMsPerKReq!.toFixed(0)} | ${r.peakConnections ?? ''} |`,
    ),
  ];
  const table = lines.join('\n');
  process.stdout.write(`\n${table}\n\nconnection cap (DB_MAX_CONNECTIONS): ${MAX_CONNECTIONS}; tenants: ${TENANTS} (${SCHEMA_TENANTS} schema, ${DEDICATED_TENANTS} dedicated)\n`);
  writeFileSync(fromRoot('bench-results.json'), JSON.stringify({ at: new Date().toISOString(), tenants: TENANTS, connections: CONNECTIONS, duration: DURATION, maxConnections: MAX_CONNECTIONS, rows }, null, 2));
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
