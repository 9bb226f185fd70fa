import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { AppConfig, loadConfig } from '../../config/configuration.js';
import { fromRoot } from '../../config/paths.js';
import { loadSqlMigrations, quoteIdent, tenantObjectName } from '../../libs/postgres/index.js';
import { cloneTemplate, harnessInfo, HarnessInfo, withSuperuser } from '../../libs/testing/index.js';
import { migrateTenantPlacements, prepareDatabases } from '../../src/tenancy/infrastructure.js';
import { PlacementOutcome, runMigrationRollout } from '../../src/tenancy/migration-rollout.js';
import { DatabaseRuntime, preparePlacement, SHARED_SCHEMA } from '../../src/tenancy/placements.js';
import type { TenantStatus, Tier } from '../../src/tenancy/tenant-route.js';
import { cliEnv, runCli, tableRows } from '../support/cli-runner.js';
import { startTestApp } from '../support/test-app.js';

/**
 * A tenant migration rolled out over 200+ real placements (schemas, dedicated databases on both
 * servers, the shared schema) with one of them broken on purpose: waves in order, canary first,
 * failures recorded and set aside, stop-on-failure, resumable reruns, start-up without migrations,
 * and the CLI (`migrate` flags, `migrations status`).
 */
const NEW_MIGRATION = { name: '0099_test_column.sql', sql: 'ALTER TABLE projects ADD COLUMN rollout_note text' };
/** The newest tenant migration of the code: where every placement starts, and what a placement the test migration failed on stays at. */
const LATEST = loadSqlMigrations(fromRoot('migrations', 'tenant')).at(-1)!.name;
const SCHEMA_TENANTS = 200;

interface Fixture {
  id: string;
  slug: string;
  tier: Tier;
  status: TenantStatus;
  server: string;
  database: string;
  schema: string;
}

let h: HarnessInfo;
let database: string;
let config: AppConfig;
let runtime: DatabaseRuntime;
let cwd: string;
let cliVars: Record<string, string>;
const tenants: Fixture[] = [];
const outputs: string[] = [];

/** Schema and dedicated tenants that are kept migrated, oldest first: the placements besides the shared one. */
const eligible = () => tenants.filter((t) => t.tier !== 'shared' && ['active', 'suspended', 'pending_deletion'].includes(t.status));
const bySlug = (slug: string) => tenants.find((t) => t.slug === slug)!;
const keyOf = (o: PlacementOutcome) => o.placement.tenantSlug ?? 'shared';
let broken: Fixture; // the oldest placement; NEW_MIGRATION fails there
let canary: Fixture;
let dedicated: Fixture[];
const TOTAL = () => eligible().length + 1;

const portOf = (server: string) => (server === 'primary' ? h.primaryPort : h.secondaryPort);

function primarySql<T extends pg.QueryResultRow = any>(sql: string, params: unknown[] = []): Promise<T[]> {
  return withSuperuser(h, h.primaryPort, database, async (c) => (await c.query<T>(sql, params)).rows);
}

/** Every placement's own _migrations table (not the bookkeeping), by tenant slug ('shared' for the shared schema). */
async function realVersions(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  const inPrimary = [{ slug: 'shared', schema: SHARED_SCHEMA }, ...tenants.filter((t) => t.tier === 'schema')];
  const union = inPrimary
    .map((p, i) => `SELECT ${i} AS i, array_agg(name ORDER BY name) AS names FROM ${quoteIdent(p.schema)}._migrations`)
    .join(' UNION ALL ');
  for (const r of await primarySql<{ i: number; names: string[] }>(union)) out.set(inPrimary[r.i].slug, r.names);
  for (const t of tenants.filter((x) => x.tier === 'dedicated')) {
    const names = await withSuperuser(h, portOf(t.server), t.database, async (c) =>
      (await c.query(`SELECT array_agg(name ORDER BY name) AS names FROM tenant_data._migrations`)).rows[0].names as string[],
    );
    out.set(t.slug, names);
  }
  return out;
}

interface Bookkeeping {
  status: string;
  version: string | null;
  error: string | null;
  tenant_id: string | null;
}

async function bookkeeping(): Promise<Map<string, Bookkeeping>> {
  const rows = await primarySql<Bookkeeping & { slug: string | null; tier: string }>(
    `SELECT t.slug, pm.tier, pm.status, pm.version, pm.error, pm.tenant_id
       FROM control.placement_migrations pm LEFT JOIN control.tenants t ON t.id = pm.tenant_id`,
  );
  return new Map(rows.map((r) => [r.slug ?? (r.tier === 'shared' ? 'shared' : '?'), { status: r.status, version: r.version, error: r.error, tenant_id: r.tenant_id }]));
}

/** The waves ran one after the other: nothing of a wave started before the one before it had finished. */
function expectWavesInOrder(outcomes: PlacementOutcome[]): void {
  const attempted = outcomes.filter((o) => o.wave > 0 && o.startedAt !== undefined);
  const waves = [...new Set(attempted.map((o) => o.wave))].sort((a, b) => a - b);
  for (const [i, w] of waves.entries()) {
    if (i === 0) continue;
    const lastFinish = Math.max(...attempted.filter((o) => o.wave === waves[i - 1]).map((o) => o.finishedAt!));
    const firstStart = Math.min(...attempted.filter((o) => o.wave === w).map((o) => o.startedAt!));
    expect(firstStart).toBeGreaterThanOrEqual(lastFinish);
  }
}

async function limited<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

async function cli(...args: string[]) {
  const run = await runCli({ cwd, env: cliVars }, ...args);
  outputs.push(run.stdout, run.stderr);
  return run;
}

beforeAll(async () => {
  h = harnessInfo();
  database = await cloneTemplate(h, 'rollout');
  cwd = mkdtempSync(join(tmpdir(), 'tenancy-rollout-'));
  const jwt = randomBytes(32).toString('hex');
  cliVars = cliEnv(h, database, jwt);
  config = loadConfig({ ...cliVars, MIGRATION_CONCURRENCY: '4' });
  runtime = await prepareDatabases(config);

  // Oldest first: the broken placement is the oldest; dedicated ones (two per server) are spread
  // over the list; one suspended and one pending deletion are migrated too; the last two (still
  // being provisioned, failed) are not.
  const dedicatedAt: Record<number, string> = { 5: 'primary', 60: 'secondary', 120: 'primary', 180: 'secondary' };
  const count = SCHEMA_TENANTS + Object.keys(dedicatedAt).length + 2;
  const statuses: Record<number, TenantStatus> = { 7: 'suspended', 8: 'pending_deletion', [count - 2]: 'provisioning', [count - 1]: 'failed' };
  for (let i = 0; i < count; i++) {
    const id = randomUUID();
    const server = dedicatedAt[i];
    tenants.push({
      id,
      slug: `ro-${String(i).padStart(3, '0')}-${randomBytes(2).toString('hex')}`,
      tier: server ? 'dedicated' : 'schema',
      status: statuses[i] ?? 'active',
      server: server ?? 'primary',
      database: server ? tenantObjectName(id) : database,
      schema: server ? SHARED_SCHEMA : tenantObjectName(id),
    });
  }
  const shared = Array.from({ length: 3 }, (_, i): Fixture => ({
    id: randomUUID(),
    slug: `ro-shared-${i}-${randomBytes(2).toString('hex')}`,
    tier: 'shared',
    status: 'active',
    server: 'primary',
    database,
    schema: SHARED_SCHEMA,
  }));
  const n = tenants.length;
  await primarySql(
    `INSERT INTO control.tenants (id, slug, name, status, tier, server_key, database_name, schema_name, created_at,
                                  deletion_requested_at, purge_after)
     SELECT id, slug, slug, status, tier, server, db, sch, now() - make_interval(secs => $8::int - ord),
            CASE WHEN status = 'pending_deletion' THEN now() END, CASE WHEN status = 'pending_deletion' THEN now() + interval '30 days' END
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY
            AS u (id, slug, status, tier, server, db, sch, ord)`,
    [
      [...tenants, ...shared].map((t) => t.id),
      [...tenants, ...shared].map((t) => t.slug),
      [...tenants, ...shared].map((t) => t.status),
      [...tenants, ...shared].map((t) => t.tier),
      [...tenants, ...shared].map((t) => t.server),
      [...tenants, ...shared].map((t) => t.database),
      [...tenants, ...shared].map((t) => t.schema),
      n + 10,
    ],
  );
  tenants.push(...shared);
  // Real placements, made as provisioning makes them (schema or database, migrated, grants).
  await limited(
    tenants.filter((t) => t.tier !== 'shared'),
    8,
    async (t) => void (await preparePlacement(runtime, { tier: t.tier, serverKey: t.server, database: t.database, schema: t.schema })),
  );
  broken = tenants[0];
  canary = tenants[100];
  dedicated = tenants.filter((t) => t.tier === 'dedicated');
  expect(broken.tier).toBe('schema');
  expect(canary.tier).toBe('schema');
  expect(new Set(dedicated.map((t) => t.server))).toEqual(new Set(['primary', 'secondary']));
  expect(eligible()).toHaveLength(SCHEMA_TENANTS + dedicated.length);

  runtime.tenantMigrations.push(NEW_MIGRATION);
  // The broken placement already has what the migration adds (a hand-made change, say).
  await primarySql(`ALTER TABLE ${quoteIdent(broken.schema)}.projects ADD COLUMN rollout_note text`);
}, 60_000);

afterAll(async () => {
  await runtime?.stop();
  for (const t of tenants.filter((x) => x.tier === 'dedicated')) {
    await withSuperuser(h, portOf(t.server), 'postgres', (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(t.database)} WITH (FORCE)`));
  }
  if (database) await withSuperuser(h, h.primaryPort, 'postgres', (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`));
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

describe('tenant migrations across every placement', () => {
  it('with stop-on-failure, runs the canary wave first and stops after the wave that failed', async () => {
    const report = await runMigrationRollout(runtime, { waves: [1, 10], concurrency: 4, canaries: [canary.slug], stopOnFailure: true });
    const secondWave = eligible()
      .filter((t) => t !== canary)
      .slice(0, 10);
    expect(secondWave).toContain(broken);
    expect(secondWave.some((t) => t.tier === 'dedicated')).toBe(true);

    expect(report.latest).toBe(NEW_MIGRATION.name);
    expect(report.stopped).toBe(true);
    expect(report.waves).toEqual([
      { wave: 1, placements: 1, migrated: 1, upToDate: 0, failed: 0 },
      { wave: 2, placements: 10, migrated: 9, upToDate: 0, failed: 1 },
    ]);
    const attempted = report.outcomes.filter((o) => o.result !== 'skipped' && o.wave > 0);
    expect(attempted.filter((o) => o.wave === 1).map(keyOf)).toEqual([canary.slug]);
    expect(attempted.filter((o) => o.wave === 2).map(keyOf).sort()).toEqual(secondWave.map((t) => t.slug).sort());
    expectWavesInOrder(report.outcomes);
    expect(report.failed.map(keyOf)).toEqual([broken.slug]);
    expect(report.failed[0].error).toMatch(/^0099_test_column\.sql: column "rollout_note" of relation "projects" already exists \(42701\)$/);
    expect(report).toMatchObject({ total: TOTAL(), migrated: 10, upToDate: 0, skipped: TOTAL() - 11 });
    // The shared placement, with most tenants, was never reached.
    expect(report.outcomes.find((o) => o.placement.tier === 'shared')).toMatchObject({ result: 'skipped' });

    const real = await realVersions();
    const withNew = [...real].filter(([, names]) => names.includes(NEW_MIGRATION.name)).map(([slug]) => slug);
    expect(withNew.sort()).toEqual([canary, ...secondWave.filter((t) => t !== broken)].map((t) => t.slug).sort());
    const books = await bookkeeping();
    expect(books.get(broken.slug)).toMatchObject({ status: 'failed', version: LATEST, error: report.failed[0].error });
    expect(books.get(canary.slug)).toMatchObject({ status: 'ok', version: NEW_MIGRATION.name, error: null });
    // What the stop left behind is visible as pending.
    expect(books.get('shared')).toMatchObject({ status: 'pending', version: LATEST });
    expect([...books.values()].filter((b) => b.status === 'pending')).toHaveLength(TOTAL() - 11);
  });

  it('goes on past a failure, sets the broken placement aside, and brings every other placement to the new version', async () => {
    const progress: Array<[number, number]> = [];
    const logged: string[] = [];
    const report = await migrateTenantPlacements(runtime, (m) => logged.push(m), (done, total) => progress.push([done, total]), {
      waves: [1, 10],
      concurrency: 4,
    });
    // The ten done before are skipped by their bookkeeping; the oldest left (the broken one) is the canary.
    expect(report.upToDate).toBe(10);
    expect(report.outcomes.filter((o) => o.wave === 1).map(keyOf)).toEqual([broken.slug]);
    expect(report.waves.map((w) => w.placements)).toEqual([1, 10, TOTAL() - 10 - 11 - 1, 1]);
    expect(report.outcomes.filter((o) => o.wave === 4).map(keyOf)).toEqual(['shared']);
    expectWavesInOrder(report.outcomes);
    expect(report).toMatchObject({ total: TOTAL(), migrated: TOTAL() - 11, skipped: 0, stopped: false });
    expect(report.failed.map(keyOf)).toEqual([broken.slug]);
    expect(runtime.failedPlacements.get(broken.id)).toEqual({
      tenant: broken.slug,
      reason: expect.stringContaining('column "rollout_note" of relation "projects" already exists'),
    });
    expect(runtime.failedPlacements.size).toBe(1);
    expect(logged.join('\n')).toContain(`tenant migrations failed for ${broken.slug} (schema on primary)`);
    expect(progress[0]).toEqual([0, TOTAL()]);
    expect(progress.at(-1)).toEqual([TOTAL(), TOTAL()]);
    expect(progress.map(([d]) => d)).toEqual([...progress.map(([d]) => d)].sort((a, b) => a - b));

    const real = await realVersions();
    for (const t of tenants.filter((x) => x.tier !== 'shared')) {
      const names = real.get(t.slug)!;
      const shouldHave = t !== broken && eligible().includes(t);
      expect([t.slug, names.includes(NEW_MIGRATION.name)]).toEqual([t.slug, shouldHave]);
    }
    expect(real.get('shared')).toContain(NEW_MIGRATION.name);
    expect(real.get(broken.slug)!.at(-1)).toBe(LATEST);

    const books = await bookkeeping();
    expect(books.size).toBe(TOTAL());
    const notOk = [...books].filter(([, b]) => b.status !== 'ok' || b.version !== NEW_MIGRATION.name).map(([slug]) => slug);
    expect(notOk).toEqual([broken.slug]);
    expect(books.get('shared')).toMatchObject({ tenant_id: null, status: 'ok' });
    for (const d of dedicated) expect(books.get(d.slug)).toMatchObject({ tenant_id: d.id, status: 'ok', version: NEW_MIGRATION.name });
  });

  it('shows the bookkeeping with failures first, a count by version, and changes nothing (migrations status)', async () => {
    const before = await primarySql(`SELECT * FROM control.placement_migrations ORDER BY 1, 2, 3`);
    const res = await cli('migrations', 'status', '--limit', '5');
    expect(res.code).toBe(0);
    const [placements, versions] = res.stdout.split(/\n(?=┌)/).map(tableRows);
    expect(placements[0]).toEqual(['tenant', 'tier', 'server', 'database/schema', 'version', 'status', 'error', 'attempted']);
    expect(placements).toHaveLength(6);
    expect(placements[1].slice(0, 6)).toEqual([broken.slug, 'schema', 'primary', `${database}/${broken.schema}`, LATEST, 'failed']);
    expect(placements[1][6]).toContain('already exists (42701)');
    expect(placements[1][7]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
    for (const row of placements.slice(2)) expect(row.slice(4, 7)).toEqual([NEW_MIGRATION.name, 'ok', '']);
    expect(versions).toEqual([
      ['version', 'placements', 'ok', 'failed', 'pending'],
      [NEW_MIGRATION.name, String(TOTAL() - 1), String(TOTAL() - 1), '0', '0'],
      [LATEST, '1', '0', '1', '0'],
    ]);
    expect(res.stderr).toContain(`5 of ${TOTAL()} recorded placements (raise --limit to see more)`);
    expect(res.stderr).toContain(`this code's newest tenant migration: ${LATEST}`);

    const failed = await cli('migrations', 'status', '--failed');
    expect(failed.code).toBe(0);
    expect(tableRows(failed.stdout.split(/\n(?=┌)/)[0]).slice(1).map((r) => r[0])).toEqual([broken.slug]);
    expect(failed.stderr).toContain('1 of 1 failed placement');

    const bad = await cli('migrations', 'status', '--limit', 'all');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--limit');
    expect(await primarySql(`SELECT * FROM control.placement_migrations ORDER BY 1, 2, 3`)).toEqual(before);
  });

  it('after the broken placement is fixed, a rerun migrates that one only; another does nothing; recheck connects to all', async () => {
    await primarySql(`ALTER TABLE ${quoteIdent(broken.schema)}.projects DROP COLUMN rollout_note`);
    const rerun = await runMigrationRollout(runtime, { waves: [1, 10], concurrency: 4 });
    expect(rerun).toMatchObject({ total: TOTAL(), migrated: 1, upToDate: TOTAL() - 1, skipped: 0, failed: [] });
    expect(rerun.outcomes.filter((o) => o.wave > 0).map(keyOf)).toEqual([broken.slug]);
    expect((await realVersions()).get(broken.slug)).toContain(NEW_MIGRATION.name);
    const books = await bookkeeping();
    expect([...books.values()].every((b) => b.status === 'ok' && b.version === NEW_MIGRATION.name && b.error === null)).toBe(true);

    const again = await runMigrationRollout(runtime, { waves: [1, 10], concurrency: 4 });
    expect(again).toMatchObject({ migrated: 0, upToDate: TOTAL(), waves: [] });

    const recheck = await runMigrationRollout(runtime, { waves: [1, 10], concurrency: 8, recheck: true });
    expect(recheck).toMatchObject({ migrated: 0, upToDate: TOTAL(), failed: [], skipped: 0 });
    expect(recheck.outcomes.filter((o) => o.wave > 0)).toHaveLength(TOTAL());
    expect(recheck.waves.map((w) => w.placements)).toEqual([1, 10, TOTAL() - 12, 1]);
  });

  it('fails the placements of an unreachable server at once after the first, naming the server, and goes on', async () => {
    runtime.servers.set('gone', { ...runtime.primary, key: 'gone', port: 1 });
    const ids = [randomUUID(), randomUUID()];
    await primarySql(`INSERT INTO control.database_servers (key, host, port) VALUES ('gone', '127.0.0.1', 1)`);
    await primarySql(
      `INSERT INTO control.tenants (id, slug, name, status, tier, server_key, database_name, schema_name, created_at)
       SELECT id, 'gone-' || ord, 'gone', 'active', 'dedicated', 'gone', 't_' || replace(id::text, '-', ''), 'tenant_data',
              now() + make_interval(secs => ord)
         FROM unnest($1::uuid[]) WITH ORDINALITY AS u (id, ord)`,
      [ids],
    );
    try {
      const report = await runMigrationRollout(runtime, { waves: [1, 10], concurrency: 4 });
      expect(report).toMatchObject({ total: TOTAL() + 2, migrated: 0, upToDate: TOTAL(), skipped: 0 });
      expect(report.failed.map(keyOf)).toEqual(['gone-1', 'gone-2']);
      expect(report.failed[0].error).toBe('connect ECONNREFUSED 127.0.0.1:1 (ECONNREFUSED)');
      expect(report.failed[1].error).toBe(`not attempted: server 'gone' was unreachable earlier in this run (${report.failed[0].error})`);
      expect((await bookkeeping()).get('gone-2')).toMatchObject({ status: 'failed', error: report.failed[1].error });
    } finally {
      runtime.servers.delete('gone');
      await primarySql(`DELETE FROM control.tenants WHERE server_key = 'gone'`);
      await primarySql(`DELETE FROM control.database_servers WHERE key = 'gone'`);
    }
  });

  it('at start-up without MIGRATE_ON_START, migrates nothing and sets aside the tenants of placements recorded behind or failed', async () => {
    const [failing, pending, old, unrecorded] = [tenants[20], tenants[21], tenants[22], tenants[23]];
    const shared = tenants.filter((t) => t.tier === 'shared');
    // A placement behind the code for real (0002 missing, its objects gone), that no rollout recorded.
    const u = quoteIdent(unrecorded.schema);
    await primarySql(`DROP FUNCTION ${u}.tenant_write_gate(); DROP TABLE ${u}.tenant_fences; DELETE FROM ${u}._migrations WHERE name = '0002_write_gate.sql'`);
    await primarySql(`DELETE FROM control.placement_migrations WHERE tenant_id = $1`, [unrecorded.id]);
    await primarySql(`UPDATE control.placement_migrations SET status = 'failed', error = 'boom' WHERE tenant_id = $1`, [failing.id]);
    await primarySql(`UPDATE control.placement_migrations SET status = 'pending' WHERE tenant_id = $1`, [pending.id]);
    await primarySql(`UPDATE control.placement_migrations SET version = '0001_projects_tasks.sql' WHERE tenant_id = $1`, [old.id]);
    await primarySql(`UPDATE control.placement_migrations SET status = 'failed', error = 'shared boom' WHERE tier = 'shared'`);
    const email = 'member@rollout.test';
    await primarySql(
      `WITH u AS (INSERT INTO control.users (id, email) VALUES (gen_random_uuid(), $1) RETURNING id)
       INSERT INTO control.memberships (tenant_id, user_id, role) SELECT t, u.id, 'owner' FROM u, unnest($2::uuid[]) AS t`,
      [email, [failing.id, unrecorded.id, shared[0].id, tenants[30].id]],
    );
    const before = await primarySql(`SELECT * FROM control.placement_migrations ORDER BY 1, 2, 3`);

    const app = await startTestApp({ database, env: { MIGRATE_ON_START: 'false', JWT_SECRET: cliVars.JWT_SECRET } });
    try {
      const aside = app.runtime.failedPlacements;
      expect([...aside.keys()].sort()).toEqual([failing.id, pending.id, old.id, ...shared.map((t) => t.id)].sort());
      expect(aside.get(failing.id)!.reason).toBe('tenant migrations failed: boom');
      expect(aside.get(old.id)!.reason).toContain(`behind (at 0001_projects_tasks.sql, this code needs ${LATEST})`);
      expect(aside.get(shared[0].id)!.reason).toBe('tenant migrations failed: shared boom');
      // Nothing was migrated, nothing recorded.
      expect((await realVersions()).get(unrecorded.slug)).not.toContain('0002_write_gate.sql');
      expect(await primarySql(`SELECT * FROM control.placement_migrations ORDER BY 1, 2, 3`)).toEqual(before);

      const member = await app.login(email);
      for (const t of [failing, shared[0]]) {
        const res = await member.get(`/orgs/${t.slug}/projects`);
        expect([t.slug, res.status, res.body.code]).toEqual([t.slug, 503, 'TENANT_UNAVAILABLE']);
      }
      expect((await member.get(`/orgs/${tenants[30].slug}/projects`)).status).toBe(200);
    } finally {
      await app.close();
    }

    // With migrations on start (the default), start-up brings them all back and sets nothing aside.
    const migrating = await startTestApp({ database, env: { JWT_SECRET: cliVars.JWT_SECRET } });
    try {
      expect(migrating.runtime.failedPlacements.size).toBe(0);
      expect((await realVersions()).get(unrecorded.slug)).toContain('0002_write_gate.sql');
      const books = await bookkeeping();
      for (const t of [failing, pending, old, unrecorded]) expect(books.get(t.slug)).toMatchObject({ status: 'ok', version: NEW_MIGRATION.name });
      expect(books.get('shared')).toMatchObject({ status: 'ok', version: NEW_MIGRATION.name, error: null });
    } finally {
      await migrating.close();
    }
  });

  it('migrate (CLI): refuses bad flags with exit code 2 and explains every flag in --help', async () => {
    const help = await cli('migrate', '--help');
    expect(help.code).toBe(0);
    for (const flag of ['--waves <sizes>', '--concurrency <n>', '--canary <slugs>', '--stop-on-failure', '--recheck', 'Examples:']) {
      expect(help.stdout).toContain(flag);
    }
    const cases: Array<[string[], string]> = [
      [['--waves', '1,x'], "option '--waves <sizes>' argument '1,x' is invalid. must be comma-separated whole numbers of at least 1"],
      [['--waves', '0'], 'at least 1'],
      [['--concurrency', '0'], 'must be a whole number from 1 to 64'],
      [['--canary', 'Not_A_Slug'], "'Not_A_Slug' is not one"],
      [['--canary', 'no-such-tenant'], "bad canary: 'no-such-tenant': no tenant has this slug"],
      [['--canary', tenants.find((t) => t.tier === 'shared')!.slug], 'is a shared-tier tenant'],
      [['--canary', tenants.find((t) => t.status === 'provisioning')!.slug], 'is provisioning, so its placement is not migrated'],
    ];
    for (const [args, message] of cases) {
      const res = await cli('migrate', ...args);
      expect([args.join(' '), res.code]).toEqual([args.join(' '), 2]);
      expect(res.stderr).toContain(message);
      expect(res.stderr).not.toMatch(/^\s+at .+/m);
    }
  });

  it('migrate (CLI): skips what the bookkeeping shows up to date, finds drift with --recheck, stops after the canary wave, exits 1, and resumes', async () => {
    const drifted = tenants[40];
    const plain = await cli('migrate');
    expect(plain.code).toBe(0);
    expect(tableRows(plain.stdout)[1]).toEqual([String(TOTAL()), '0', String(TOTAL()), '0', '0', expect.stringMatching(/^\d+\.\d$/)]);
    expect(plain.stdout).toContain(`on ${TOTAL()} placements: the shared tier and ${TOTAL() - 1} tenant placements (schema and dedicated tiers) on servers primary, secondary`);

    // Drift the bookkeeping cannot see: the placement lost the record of a migration it has.
    await primarySql(`DELETE FROM ${quoteIdent(drifted.schema)}._migrations WHERE name = '0002_write_gate.sql'`);
    expect((await cli('migrate')).code).toBe(0);

    const res = await cli('migrate', '--recheck', '--canary', drifted.slug, '--waves', '1,5', '--concurrency', '3', '--stop-on-failure');
    expect(res.code).toBe(1);
    const [summary, waves, failures] = res.stdout.split(/\n(?=┌)/).map(tableRows);
    expect(summary[0]).toEqual(['placements', 'migrated', 'already up to date', 'failed', 'skipped', 'seconds']);
    expect(summary[1].slice(0, 5)).toEqual([String(TOTAL()), '0', '0', '1', String(TOTAL() - 1)]);
    expect(waves.slice(1)).toEqual([['1', '1', '0', '0', '1']]);
    expect(failures[1].slice(0, 3)).toEqual([`${drifted.slug} (schema on primary)`, '1', `${database}/${drifted.schema}`]);
    expect(failures[1][4]).toContain('0002_write_gate.sql: relation "tenant_fences" already exists (42P07)');
    expect(res.stderr).toContain(`1 of ${TOTAL()} placements failed to migrate`);
    expect(res.stderr).toContain(`stopped after wave 1, ${TOTAL() - 1} placements skipped`);
    expect(res.stderr).toContain('migrations status --failed');
    expect(res.stderr).toMatch(/tenant placements \[[^\]]*\] \d+% \| 1\/\d+ \| migrated 0, up to date 0, failed 1 \| wave 1\/\d+ \| ETA/);
    expect(res.stderr).not.toMatch(/^\s+at .+/m);

    const status = await cli('migrations', 'status', '--failed');
    expect(tableRows(status.stdout.split(/\n(?=┌)/)[0]).slice(1).map((r) => [r[0], r[5]])).toEqual([[drifted.slug, 'failed']]);

    await primarySql(`INSERT INTO ${quoteIdent(drifted.schema)}._migrations (name) VALUES ('0002_write_gate.sql')`);
    const resumed = await cli('migrate');
    expect(resumed.code).toBe(0);
    expect(tableRows(resumed.stdout)[1].slice(0, 5)).toEqual([String(TOTAL()), '0', String(TOTAL()), '0', '0']);
    expect(resumed.stderr).toMatch(new RegExp(`tenant placements \\[[^\\]]*\\] 100% \\| ${TOTAL()}/${TOTAL()} \\| migrated 0, up to date ${TOTAL()}, failed 0`));
    expect((await bookkeeping()).get(drifted.slug)).toMatchObject({ status: 'ok', version: NEW_MIGRATION.name, error: null });
  });

  it('never printed a password', () => {
    const all = outputs.join('\n');
    expect(outputs.length).toBeGreaterThan(10);
    for (const secret of [h.superuserPassword, h.ownerPassword, h.appPassword]) expect(all).not.toContain(secret);
    expect(all).not.toContain('open handles');
  });
});
