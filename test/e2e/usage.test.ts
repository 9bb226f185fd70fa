import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { quoteIdent, tenantObjectName } from '../../libs/postgres/index.js';
import { HttpClient, ownerUrl, withSuperuser } from '../../libs/testing/index.js';
import { LifecycleSweeper } from '../../src/lifecycle/sweeper.service.js';
import { MetricsService } from '../../src/usage/metrics.service.js';
import { UsageMeter } from '../../src/usage/usage-meter.service.js';
import { UsageSnapshot } from '../../src/usage/usage-snapshot.js';
import { cliEnv, runCli, tableRows } from '../support/cli-runner.js';
import { createTenant, seedProjects, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Usage metering on real PostgreSQL: requests of known kinds to tenants on different tiers are
 * counted exactly, per tenant; several instances add to the same rows; a flush that fails keeps
 * its counts, one that succeeded is never added again (also across a shutdown and a new
 * instance); snapshots of rows stored and seats match the real counts on every tier; and the
 * usage APIs check their input and their callers.
 */

// No periodic flush during the tests: every flush here is one the test asks for.
const ENV = { USAGE_FLUSH_INTERVAL_MS: '3600000', USAGE_SNAPSHOT_INTERVAL_MS: '3600000' };
const UNKNOWN_UUID = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';

let t: TestApp;
let jwtSecret: string;
let shared: TenantFixture;
let dedicated: TenantFixture;
let schema: TenantFixture;
let admin: HttpClient;
let outsider: HttpClient;

beforeAll(async () => {
  jwtSecret = randomBytes(32).toString('hex');
  t = await startTestApp({ env: { ...ENV, JWT_SECRET: jwtSecret } });
  [shared, dedicated, schema] = await Promise.all([
    createTenant(t, { tier: 'shared' }),
    createTenant(t, { tier: 'dedicated' }),
    createTenant(t, { tier: 'schema' }),
  ]);
  admin = await t.admin();
  outsider = await t.login(`outsider-${randomBytes(4).toString('hex')}@elsewhere.test`);
});
afterAll(async () => {
  await t?.close();
});

interface Totals {
  requests: number;
  errors: number;
  writes: number;
  dbTimeMs: number;
}

/** What usage_daily holds for a tenant, summed over every day (a test may run across midnight UTC). */
async function stored(tenant: { id: string }): Promise<Totals> {
  return withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c) => {
    const { rows } = await c.query<{ requests: string; errors: string; writes: string; db_time_ms: number }>(
      `SELECT coalesce(sum(requests), 0)::text AS requests, coalesce(sum(errors), 0)::text AS errors,
              coalesce(sum(writes), 0)::text AS writes, coalesce(sum(db_time_ms), 0)::float8 AS db_time_ms
         FROM control.usage_daily WHERE tenant_id = $1`,
      [tenant.id],
    );
    return { requests: Number(rows[0].requests), errors: Number(rows[0].errors), writes: Number(rows[0].writes), dbTimeMs: rows[0].db_time_ms };
  });
}

function counts(x: Totals): Omit<Totals, 'dbTimeMs'> {
  return { requests: x.requests, errors: x.errors, writes: x.writes };
}

function added(after: Totals, before: Totals): Omit<Totals, 'dbTimeMs'> {
  return { requests: after.requests - before.requests, errors: after.errors - before.errors, writes: after.writes - before.writes };
}

async function expectStatus(p: Promise<{ status: number; body: unknown }>, status: number): Promise<void> {
  const res = await p;
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
}

const meter = (app: TestApp = t) => app.app.get(UsageMeter);

async function pendingTenantDays(app: TestApp = t): Promise<number> {
  const metric = await app.app.get(MetricsService).registry.getSingleMetric('tenancy_usage_pending_tenant_days')!.get();
  return metric.values[0].value;
}

async function member(tenant: TenantFixture, role: string): Promise<HttpClient> {
  const email = `${role}-${randomBytes(4).toString('hex')}@${tenant.slug}.test`;
  await expectStatus(tenant.owner.post(`/orgs/${tenant.slug}/members`, { email, role }), 201);
  return t.login(email);
}

describe('metering', () => {
  it("counts each tenant's requests, errors, writes and database time exactly, with no bleed between tenants", async () => {
    await meter().flush();
    const before = { shared: await stored(shared), dedicated: await stored(dedicated), schema: await stored(schema) };
    const started = performance.now();
    const s = `/orgs/${shared.slug}`;
    // Shared tier: 3 reads, 1 read named by the X-Tenant header, 2 writes, a 404 from the handler and a 400 from validation.
    for (let i = 0; i < 3; i++) await expectStatus(shared.owner.get(`${s}/projects`), 200);
    await expectStatus(shared.owner.withHeaders({ 'x-tenant': shared.slug }).get('/projects'), 200);
    await expectStatus(shared.owner.post(`${s}/projects`, { name: 'metered 1' }), 201);
    await expectStatus(shared.owner.post(`${s}/projects`, { name: 'metered 2' }), 201);
    await expectStatus(shared.owner.get(`${s}/projects/${UNKNOWN_UUID}`), 404);
    await expectStatus(shared.owner.post(`${s}/projects`, {}), 400);
    // Not the tenant's usage: a non-member's probe is refused before the tenant is entered.
    await expectStatus(outsider.get(`${s}/projects`), 404);
    // Dedicated tier: 2 reads, 1 write, 1 failed delete.
    const d = `/orgs/${dedicated.slug}`;
    await expectStatus(dedicated.owner.get(`${d}/projects`), 200);
    await expectStatus(dedicated.owner.get(`${d}/projects`), 200);
    await expectStatus(dedicated.owner.post(`${d}/projects`, { name: 'metered' }), 201);
    await expectStatus(dedicated.owner.delete(`${d}/projects/${UNKNOWN_UUID}`), 404);
    const elapsedMs = performance.now() - started;

    // Nothing reaches the table before a flush.
    expect(counts(await stored(shared))).toEqual(counts(before.shared));
    await meter().flush();
    const after = { shared: await stored(shared), dedicated: await stored(dedicated), schema: await stored(schema) };
    expect(added(after.shared, before.shared)).toEqual({ requests: 8, errors: 2, writes: 2 });
    expect(added(after.dedicated, before.dedicated)).toEqual({ requests: 4, errors: 1, writes: 1 });
    expect(added(after.schema, before.schema)).toEqual({ requests: 0, errors: 0, writes: 0 });
    // Database time: some for every tenant that was served, never more than the requests took.
    for (const k of ['shared', 'dedicated'] as const) {
      const ms = after[k].dbTimeMs - before[k].dbTimeMs;
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThan(elapsedMs);
    }
    expect(after.schema.dbTimeMs).toBe(before.schema.dbTimeMs);
    expect(await pendingTenantDays()).toBe(0);
  });

  it('keeps the counts of a failed flush for the next one, and adds them exactly once', async () => {
    await meter().flush();
    const before = await stored(shared);
    await expectStatus(shared.owner.get(`/orgs/${shared.slug}/projects`), 200);
    await expectStatus(shared.owner.post(`/orgs/${shared.slug}/projects`, { name: 'during outage' }), 201);
    const app = quoteIdent(t.harness.appUser);
    await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) => c.query(`REVOKE INSERT, UPDATE ON control.usage_daily FROM ${app}`));
    try {
      await expect(meter().flush()).rejects.toThrow(/permission denied/);
      expect(counts(await stored(shared))).toEqual(counts(before));
      // Counted while the flush was failing: kept too.
      await expectStatus(shared.owner.get(`/orgs/${shared.slug}/projects`), 200);
    } finally {
      await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) => c.query(`GRANT INSERT, UPDATE ON control.usage_daily TO ${app}`));
    }
    await meter().flush();
    expect(added(await stored(shared), before)).toEqual({ requests: 3, errors: 0, writes: 1 });
    await meter().flush();
    expect(added(await stored(shared), before)).toEqual({ requests: 3, errors: 0, writes: 1 });
  });

  it('drops the counts of a tenant that does not exist (any more) instead of failing every flush', async () => {
    await meter().flush();
    const before = await stored(shared);
    const gone = randomUUID();
    meter().record(gone, 'POST', 201, 3);
    await expectStatus(shared.owner.get(`/orgs/${shared.slug}/projects`), 200);
    await meter().flush();
    expect(added(await stored(shared), before)).toEqual({ requests: 1, errors: 0, writes: 0 });
    expect(await stored({ id: gone })).toEqual({ requests: 0, errors: 0, writes: 0, dbTimeMs: 0 });
    expect(await pendingTenantDays()).toBe(0);
  });

  describe('several instances', () => {
    let two: TestApp;
    let ownerOnTwo: HttpClient;
    beforeAll(async () => {
      two = await startTestApp({ database: t.database, env: { ...ENV, JWT_SECRET: jwtSecret } });
      ownerOnTwo = await two.login(shared.ownerEmail);
    });
    afterAll(async () => {
      await two?.close();
    });

    it('a second instance on the same control plane adds to the same rows', async () => {
      await meter().flush();
      await meter(two).flush();
      const before = await stored(shared);
      const s = `/orgs/${shared.slug}`;
      for (let i = 0; i < 3; i++) await expectStatus(shared.owner.get(`${s}/projects`), 200);
      await expectStatus(ownerOnTwo.get(`${s}/projects`), 200);
      await expectStatus(ownerOnTwo.get(`${s}/projects`), 200);
      await expectStatus(ownerOnTwo.post(`${s}/projects`, { name: 'from instance two' }), 201);
      await meter().flush();
      expect(added(await stored(shared), before)).toEqual({ requests: 3, errors: 0, writes: 0 });
      await meter(two).flush();
      expect(added(await stored(shared), before)).toEqual({ requests: 6, errors: 0, writes: 1 });
    });

    it('counts flushed before a shutdown are not added again; the shutdown flush adds the rest; a new instance adds nothing', async () => {
      await meter().flush();
      await meter(two).flush();
      const before = await stored(shared);
      const s = `/orgs/${shared.slug}`;
      await expectStatus(ownerOnTwo.get(`${s}/projects`), 200);
      await expectStatus(ownerOnTwo.get(`${s}/projects`), 200);
      await meter(two).flush();
      expect(added(await stored(shared), before)).toEqual({ requests: 2, errors: 0, writes: 0 });
      for (let i = 0; i < 3; i++) await expectStatus(ownerOnTwo.get(`${s}/projects`), 200);
      await expectStatus(ownerOnTwo.post(`${s}/projects`, { name: 'just before shutdown' }), 201);
      await expectStatus(ownerOnTwo.get(`${s}/projects/${UNKNOWN_UUID}`), 404);
      await two.close();
      expect(added(await stored(shared), before)).toEqual({ requests: 7, errors: 1, writes: 1 });

      // The instance "restarted": it starts with nothing pending, and serving goes on adding.
      two = await startTestApp({ database: t.database, env: { ...ENV, JWT_SECRET: jwtSecret } });
      await meter(two).flush();
      expect(added(await stored(shared), before)).toEqual({ requests: 7, errors: 1, writes: 1 });
      await expectStatus((await two.login(shared.ownerEmail)).get(`${s}/projects`), 200);
      await meter(two).flush();
      await meter().flush();
      expect(added(await stored(shared), before)).toEqual({ requests: 8, errors: 1, writes: 1 });
    });

    it('meters nothing when BENCH_SKIP_BILLING is set (no hook at all)', async () => {
      const bench = await startTestApp({
        database: t.database,
        env: { ...ENV, JWT_SECRET: jwtSecret, BENCH_BASELINE_DATABASE_URL: ownerUrl(t.harness, t.harness.primaryPort, t.database), BENCH_SKIP_BILLING: 'true' },
      });
      try {
        await meter().flush();
        const before = await stored(shared);
        const owner = await bench.login(shared.ownerEmail);
        await expectStatus(owner.get(`/orgs/${shared.slug}/projects`), 200);
        await expectStatus(owner.post(`/orgs/${shared.slug}/projects`, { name: 'unmetered' }), 201);
        expect(await pendingTenantDays(bench)).toBe(0);
        await meter(bench).flush();
        expect(counts(await stored(shared))).toEqual(counts(before));
      } finally {
        await bench.close();
      }
    });
  });
});

describe('snapshots of rows stored and active seats', () => {
  /** The truth, as a superuser (who bypasses RLS) sees it in the tenant's placement. */
  async function realCounts(tenant: TenantFixture, tables: string[]): Promise<Record<string, number>> {
    const port = tenant.tier === 'dedicated' ? t.harness.secondaryPort : t.harness.primaryPort;
    const database = tenant.tier === 'dedicated' ? tenantObjectName(tenant.id) : t.database;
    const schemaName = tenant.tier === 'schema' ? tenantObjectName(tenant.id) : 'tenant_data';
    return withSuperuser(t.harness, port, database, async (c) => {
      const out: Record<string, number> = {};
      for (const table of tables) {
        const { rows } = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quoteIdent(schemaName)}.${quoteIdent(table)} WHERE organization_id = $1`, [tenant.id]);
        out[table] = rows[0].n;
      }
      return out;
    });
  }

  async function snapshotRow(tenant: { id: string }): Promise<{ rows_stored: Record<string, number>; active_seats: number }> {
    return withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c) => {
      const { rows } = await c.query(
        `SELECT rows_stored, active_seats FROM control.usage_daily WHERE tenant_id = $1 AND rows_stored IS NOT NULL ORDER BY day DESC LIMIT 1`,
        [tenant.id],
      );
      return rows[0];
    });
  }

  async function seats(tenant: { id: string }): Promise<number> {
    return withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c) => {
      const { rows } = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM control.memberships WHERE tenant_id = $1`, [tenant.id]);
      return rows[0].n;
    });
  }

  it('match the real counts on every tier (taken by the lifecycle sweeper)', async () => {
    await seedProjects(shared, 2, 3);
    await seedProjects(dedicated, 1, 2);
    await seedProjects(schema, 3, 1);
    await member(schema, 'member');
    await member(schema, 'viewer');
    await t.app.get(LifecycleSweeper).sweep();
    for (const tenant of [shared, dedicated, schema]) {
      const row = await snapshotRow(tenant);
      expect(row).toBeDefined();
      expect(Object.keys(row.rows_stored)).toEqual(expect.arrayContaining(['projects', 'tasks', 'audit_log']));
      // Bookkeeping is not tenant data.
      expect(Object.keys(row.rows_stored)).not.toContain('audit_chain_heads');
      expect(row.rows_stored).toEqual(await realCounts(tenant, Object.keys(row.rows_stored)));
      expect(row.active_seats).toBe(await seats(tenant));
    }
    expect((await snapshotRow(schema)).active_seats).toBe(3);
    expect((await snapshotRow(schema)).rows_stored.projects).toBe(3);
    expect((await snapshotRow(schema)).rows_stored.tasks).toBe(3);
    expect((await snapshotRow(dedicated)).rows_stored.tasks).toBe(2);
  });

  it('are overwritten by the next snapshot, leaving the counters alone', async () => {
    await meter().flush();
    const countersBefore = await stored(schema);
    await seedProjects(schema, 1, 2);
    await meter().flush();
    const countersAfterSeed = await stored(schema);
    const result = await t.app.get(UsageSnapshot).run();
    expect(result.failed).toBe(0);
    expect(result.tenants).toBeGreaterThanOrEqual(3);
    const row = await snapshotRow(schema);
    expect(row.rows_stored.projects).toBe(4);
    expect(row.rows_stored.tasks).toBe(5);
    expect(row.rows_stored).toEqual(await realCounts(schema, Object.keys(row.rows_stored)));
    // The seeding's three writes were counted; the snapshot changed no counter.
    expect(added(countersAfterSeed, countersBefore)).toEqual({ requests: 3, errors: 0, writes: 3 });
    expect(counts(await stored(schema))).toEqual(counts(countersAfterSeed));
  });
});

describe('usage APIs', () => {
  const today = () => new Date().toISOString().slice(0, 10);
  const daysAgo = (n: number) => new Date(Date.now() - n * 86_400_000).toISOString().slice(0, 10);

  it("shows the tenant its own usage: by default the last 30 days, totals equal to what is stored", async () => {
    await meter().flush();
    const truth = await stored(shared);
    const res = await admin.get(`/tenants/${shared.id}/usage`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ tenantId: shared.id, slug: shared.slug, tier: 'shared', from: daysAgo(29), to: today() });
    expect(counts(res.body.totals)).toEqual(counts(truth));
    expect(res.body.totals.dbTimeMs).toBeCloseTo(truth.dbTimeMs, 2);
    expect(res.body.days.length).toBeGreaterThanOrEqual(1);
    expect(res.body.days[res.body.days.length - 1]).toMatchObject({ day: expect.stringMatching(/^\d{4}-\d{2}-\d{2}$/), requests: expect.any(Number) });

    // The tenant's own route: the request asking is itself metered, so compare before it is flushed.
    const own = await shared.owner.get(`/orgs/${shared.slug}/usage`);
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({ tenantId: shared.id, slug: shared.slug, tier: 'shared', from: daysAgo(29), to: today() });
    expect(counts(own.body.totals)).toEqual(counts(truth));
    expect(Object.keys(own.body.days[0]).sort()).toEqual(['activeSeats', 'day', 'dbTimeMs', 'errors', 'requests', 'rowsStored', 'writes']);
  });

  it('lets owners, admins and billing members read it; members and viewers get 403; non-members 404', async () => {
    const path = `/orgs/${shared.slug}/usage`;
    await expectStatus(shared.owner.get(path), 200);
    await expectStatus((await member(shared, 'admin')).get(path), 200);
    await expectStatus((await member(shared, 'billing')).get(path), 200);
    const asMember = await (await member(shared, 'member')).get(path);
    expect(asMember.status).toBe(403);
    expect(asMember.body.code).toBe('ROLE_FORBIDDEN');
    await expectStatus((await member(shared, 'viewer')).get(path), 403);
    const asOutsider = await outsider.get(path);
    expect(asOutsider.status).toBe(404);
    expect(asOutsider.body.code).toBe('TENANT_NOT_FOUND');
    // Another tenant's owner is a non-member here too.
    await expectStatus(dedicated.owner.get(path), 404);
  });

  it('refuses bad ranges with 400 naming the field', async () => {
    const path = `/orgs/${shared.slug}/usage`;
    const cases: Array<[string, string]> = [
      ['from=2025-02-30', 'from'],
      ['from=yesterday', 'from'],
      ['to=2025-1-01', 'to'],
      ['to=2025-13-01', 'to'],
      ['from=2025-03-02&to=2025-03-01', 'from'],
      ['from=2024-01-01&to=2025-01-01', 'to'],
      [`from=${daysAgo(400)}`, 'from'],
      ['from=2025-01-01&tenant=other', 'tenant'],
    ];
    for (const [query, field] of cases) {
      const res = await shared.owner.get(`${path}?${query}`);
      expect({ query, status: res.status, code: res.body.code, field: res.body.field }).toEqual({ query, status: 400, code: 'VALIDATION_FAILED', field });
    }
    // 366 days (a leap year) is the longest range.
    const longest = await shared.owner.get(`${path}?from=2024-01-01&to=2024-12-31`);
    expect(longest.status).toBe(200);
    expect(longest.body).toMatchObject({ from: '2024-01-01', to: '2024-12-31', days: [] });
    const one = await admin.get(`/tenants/${shared.id}/usage?from=${today()}&to=${today()}`);
    expect(one.status).toBe(200);
    expect(one.body.days.map((d: { day: string }) => d.day)).toEqual([today()]);
  });

  it("tenants' usage is for platform admins only; an unknown tenant is 404", async () => {
    await expectStatus(shared.owner.get(`/tenants/${shared.id}/usage`), 403);
    const unknown = await admin.get(`/tenants/${UNKNOWN_UUID}/usage`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('TENANT_NOT_FOUND');
    const bad = await admin.get('/tenants/not-a-uuid/usage');
    expect(bad.status).toBe(400);
    expect(bad.body.field).toBe('id');
    await expectStatus(admin.get(`/tenants/${UNKNOWN_UUID}/usage?from=2025-02-30`), 400);
  });

  it('lists the noisiest tenants first, by requests or by database time, with slug and tier', async () => {
    await meter().flush();
    const byRequests = await admin.get('/tenants/usage/top?by=requests&limit=100');
    expect(byRequests.status).toBe(200);
    expect(byRequests.body).toMatchObject({ by: 'requests', from: daysAgo(29), to: today() });
    const items: Array<{ tenantId: string; slug: string; tier: string; requests: number; dbTimeMs: number }> = byRequests.body.items;
    const requests = items.map((i) => i.requests);
    expect(requests).toEqual([...requests].sort((x, y) => y - x));
    for (const tenant of [shared, dedicated, schema]) {
      const truth = await stored(tenant);
      expect(items.find((i) => i.tenantId === tenant.id)).toMatchObject({ slug: tenant.slug, tier: tenant.tier, requests: truth.requests, errors: truth.errors, writes: truth.writes });
    }
    // The shared tenant, asked the most by far in this file, comes first.
    expect(items[0].tenantId).toBe(shared.id);

    const byDbTime = await admin.get('/tenants/usage/top?by=db_time');
    expect(byDbTime.status).toBe(200);
    const ms = byDbTime.body.items.map((i: { dbTimeMs: number }) => i.dbTimeMs);
    expect(ms).toEqual([...ms].sort((x: number, y: number) => y - x));
    expect(byDbTime.body.items.length).toBeLessThanOrEqual(10);

    const first = await admin.get('/tenants/usage/top?limit=1');
    expect(first.body.items).toEqual([items[0]]);
    // A day with no usage at all.
    expect((await admin.get('/tenants/usage/top?from=2020-01-01&to=2020-01-31')).body.items).toEqual([]);
  });

  it('checks the top query and its caller', async () => {
    for (const [query, field] of [
      ['by=errors', 'by'],
      ['limit=0', 'limit'],
      ['limit=101', 'limit'],
      ['from=2025-02-29', 'from'],
    ]) {
      const res = await admin.get(`/tenants/usage/top?${query}`);
      expect({ query, status: res.status, field: res.body.field }).toEqual({ query, status: 400, field });
    }
    await expectStatus(shared.owner.get('/tenants/usage/top'), 403);
  });
});

describe('CLI', () => {
  let cwd: string;
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'tenancy-usage-cli-'));
  });
  afterAll(() => {
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('`usage top` prints the noisiest tenants as the API does; a bad date is bad usage', async () => {
    await meter().flush();
    const api = await admin.get('/tenants/usage/top?limit=3');
    const env = cliEnv(t.harness, t.database, jwtSecret);
    const run = await runCli({ cwd, env }, 'usage', 'top', '--limit', '3');
    expect(run.code).toBe(0);
    const rows = tableRows(run.stdout).slice(1);
    expect(rows.map((r) => r[0])).toEqual(api.body.items.map((i: { slug: string }) => i.slug));
    expect(rows[0][3]).toBe(String(api.body.items[0].requests));
    const bad = await runCli({ cwd, env }, 'usage', 'top', '--from', '2025-02-30');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('YYYY-MM-DD');
  });
});
