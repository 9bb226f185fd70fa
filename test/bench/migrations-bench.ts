/**
 * npm run bench:migrations — what rolling a tenant migration out over many placements costs.
 *
 * Starts a throw-away embedded PostgreSQL server (default durability), provisions BENCH_TENANTS
 * schema tenants (real placements: schema, tables, grants) and measures, on the same schemas:
 *   baseline  the same additive DDL (ALTER TABLE projects ADD COLUMN …) applied schema after schema
 *             in one session, autocommit, no lock, no bookkeeping: what a hand-written loop costs;
 *   rollout   one new migration rolled out by runMigrationRollout (waves 1,10,rest + the shared
 *             placement, advisory lock, _migrations row, grants, control.placement_migrations),
 *             once per concurrency in BENCH_CONCURRENCY, each with a migration of its own and a
 *             baseline (another column) measured right before it;
 *   rerun     the same rollout again: every placement recorded up to date, nothing to connect to;
 *   recheck   a rerun with recheck: every placement contacted, nothing to apply.
 * Ratios are to the baseline. Options (environment): BENCH_TENANTS (1000), BENCH_CONCURRENCY ("1,4,8").
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { loadConfig } from '../../config/configuration.js';
import { ensureDatabase, ensurePlatformRoles, quoteIdent, startEmbeddedCluster, tenantObjectName } from '../../libs/postgres/index.js';
import { freePort } from '../../libs/testing/index.js';
import { prepareDatabases } from '../../src/tenancy/infrastructure.js';
import { runMigrationRollout } from '../../src/tenancy/migration-rollout.js';
import { preparePlacement, type DatabaseRuntime } from '../../src/tenancy/placements.js';

const TENANTS = Number(process.env.BENCH_TENANTS ?? 1000);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,4,8').split(',').map(Number);
const TARGET_S = 60;

const log = (msg: string) => process.stderr.write(`${msg}\n`);
const seconds = (ms: number) => (ms / 1000).toFixed(2);

interface Row {
  variant: string;
  ms: number;
  placements: number;
  /** To the baseline measured just before (the first one for reruns). */
  ratio: number;
  note: string;
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'tenancy-migrations-bench-'));
  chmodSync(root, 0o755);
  const superPw = randomBytes(12).toString('hex');
  const ownerPw = randomBytes(12).toString('hex');
  const appPw = randomBytes(12).toString('hex');
  const port = await freePort();
  log(`starting PostgreSQL on ${port} (data in ${root})`);
  const cluster = await startEmbeddedCluster({ dataDir: join(root, 'primary'), port, password: superPw, maxConnections: 100 });
  let runtime: DatabaseRuntime | undefined;
  try {
    const su = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: superPw, database: 'postgres' });
    await su.connect();
    await ensurePlatformRoles(su, { ownerUser: 'tenancy_owner', ownerPassword: ownerPw, appUser: 'tenancy_app', appPassword: appPw });
    await ensureDatabase(su, 'tenancy', 'tenancy_owner');
    await su.end();
    const config = loadConfig({
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      DATABASE_URL: `postgres://tenancy_owner:${ownerPw}@127.0.0.1:${port}/tenancy`,
      DATABASE_APP_PASSWORD: appPw,
      JWT_SECRET: randomBytes(32).toString('hex'),
    });
    runtime = await prepareDatabases(config, log);
    const rt = runtime;

    const setupStart = performance.now();
    const schemas = await provision(rt, TENANTS);
    log(`${TENANTS} schema tenants provisioned in ${seconds(performance.now() - setupStart)} s`);
    const first = await runMigrationRollout(rt, { waves: [1, 10], concurrency: 4 });
    log(`first rollout (records every placement, nothing to apply): ${seconds(first.durationMs)} s`);

    const rows: Row[] = [];
    let firstBaseline = 0;
    for (const c of CONCURRENCY) {
      // The baseline is measured again right before each rollout: every added column makes the catalogs a little bigger.
      const baseline = await baselineDdl(config.database.url!, schemas, `bench_base_c${c}`);
      firstBaseline ||= baseline;
      rows.push({ variant: 'baseline: same DDL, one session, no bookkeeping', ms: baseline, placements: schemas.length, ratio: 1, note: '' });
      rt.tenantMigrations.push({ name: `0100_bench_c${c}.sql`, sql: `ALTER TABLE projects ADD COLUMN bench_c${c} text` });
      const report = await runMigrationRollout(rt, { waves: [1, 10], concurrency: c });
      if (report.failed.length || report.migrated !== report.total) {
        throw new Error(`rollout at concurrency ${c}: ${report.migrated} of ${report.total} migrated, failures: ${report.failed.map((f) => f.error).join('; ')}`);
      }
      rows.push({
        variant: `rollout, concurrency ${c}`,
        ms: report.durationMs,
        placements: report.total,
        ratio: report.durationMs / baseline,
        note: `waves ${report.waves.map((w) => w.placements).join('+')}`,
      });
    }
    const rerun = await runMigrationRollout(rt, { waves: [1, 10], concurrency: 4 });
    rows.push({ variant: 'rerun (bookkeeping says up to date)', ms: rerun.durationMs, placements: rerun.total, ratio: rerun.durationMs / firstBaseline, note: `${rerun.upToDate} up to date, none contacted` });
    const recheck = await runMigrationRollout(rt, { waves: [1, 10], concurrency: 4, recheck: true });
    rows.push({
      variant: 'rerun with recheck, concurrency 4',
      ms: recheck.durationMs,
      placements: recheck.total,
      ratio: recheck.durationMs / firstBaseline,
      note: `${recheck.upToDate} contacted, nothing to apply`,
    });

    report(rows);
  } finally {
    await runtime?.stop();
    await cluster.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

/** Real schema tenants: control rows, then each placement made as provisioning makes it, eight at a time. */
async function provision(runtime: DatabaseRuntime, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, () => randomUUID());
  const schemas = ids.map(tenantObjectName);
  const db = runtime.primary.database;
  const c = new pg.Client({ host: runtime.primary.host, port: runtime.primary.port, user: runtime.primary.ownerUser, password: runtime.primary.ownerPassword, database: db });
  await c.connect();
  await c.query(
    `INSERT INTO control.tenants (id, slug, name, status, tier, server_key, database_name, schema_name, created_at)
     SELECT id, 'bench-' || ord, 'Bench ' || ord, 'active', 'schema', $2, $3, 't_' || replace(id::text, '-', ''), now() - make_interval(secs => $4::int - ord)
       FROM unnest($1::uuid[]) WITH ORDINALITY AS u (id, ord)`,
    [ids, runtime.primary.key, db, n + 1],
  );
  await c.end();
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < schemas.length) {
        const schema = schemas[next++];
        await preparePlacement(runtime, { tier: 'schema', serverKey: runtime.primary.key, database: db, schema });
      }
    }),
  );
  return schemas;
}

async function baselineDdl(url: string, schemas: string[], column: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const start = performance.now();
    for (const s of schemas) await c.query(`ALTER TABLE ${quoteIdent(s)}.projects ADD COLUMN ${quoteIdent(column)} text`);
    return Math.round(performance.now() - start);
  } finally {
    await c.end();
  }
}

function report(rows: Row[]): void {
  const lines = [
    '| variant | placements | seconds | ratio to the baseline just before | notes |',
    '|---|---:|---:|---:|---|',
    ...rows.map((r) => `| ${r.variant} | ${r.placements} | ${seconds(r.ms)} | ${r.ratio.toFixed(2)}x | ${r.note} |`),
  ];
  const worst = Math.max(...rows.filter((r) => r.variant.startsWith('rollout')).map((r) => r.ms));
  process.stdout.write(
    `\n${lines.join('\n')}\n\n${TENANTS} schema tenants + the shared placement on one server; slowest rollout ${seconds(worst)} s ` +
      `(target < ${TARGET_S} s: ${worst < TARGET_S * 1000 ? 'met' : 'MISSED'})\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
