import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type pg from 'pg';
import { TestResponse, withSuperuser } from '../../libs/testing/index.js';
import { Entitlements } from '../../src/billing/entitlements.service.js';
import { TenantBulkhead, TenantLimitCounters } from '../../src/tenancy/bulkhead.js';
import type { Tier } from '../../src/tenancy/tenant-route.js';
import { createTenant, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * A noisy tenant cannot take its neighbours down: the plan's statement timeout cancels a slow
 * query at about the plan's limit (503 QUERY_TIMEOUT, the pooled connection clean and reused),
 * and the per-tenant concurrency cap (bulkhead) keeps a tenant to its plan's connections on the
 * shared pool, queueing the rest and refusing them with 429 TENANT_BUSY, while another tenant on
 * the same pool is served promptly. On the shared and the schema tier. Uses the test-only
 * diagnostics route GET /orgs/:slug/_diagnostics/sleep?ms= (SELECT pg_sleep in the tenant transaction).
 */
const TIMEOUT_MS = 1000;
const CAP = 2;
const WAIT_MS = 1000;
const TIERS: Tier[] = ['shared', 'schema'];

/** A plan with only per-request limits: no rate limit, the given timeout and cap. */
async function addPlan(t: TestApp, key: string, rank: number, timeoutMs: number | null, cap: number | null): Promise<void> {
  await withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c) => {
    await c.query(`INSERT INTO control.plans (key, name, rank) VALUES ($1, $1, $2)`, [key, rank]);
    await c.query(
      `INSERT INTO control.plan_features (plan_key, feature, kind, limit_value, enabled) VALUES
         ($1, 'seats', 'limit', NULL, NULL), ($1, 'projects', 'limit', NULL, NULL), ($1, 'tasks_per_project', 'limit', NULL, NULL),
         ($1, 'api_requests_per_minute', 'limit', NULL, NULL), ($1, 'statement_timeout_ms', 'limit', $2, NULL),
         ($1, 'concurrent_requests', 'limit', $3, NULL),
         ($1, 'tier_shared', 'flag', NULL, true), ($1, 'tier_schema', 'flag', NULL, true), ($1, 'tier_dedicated', 'flag', NULL, true)`,
      [key, timeoutMs, cap],
    );
  });
  const entitlements = t.app.get(Entitlements);
  const until = Date.now() + 5_000;
  while (!(await entitlements.plan(key))) {
    if (Date.now() > until) throw new Error(`the app never saw plan ${key}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function timed(fn: () => Promise<TestResponse>): Promise<{ res: TestResponse; ms: number }> {
  const started = performance.now();
  const res = await fn();
  return { res, ms: performance.now() - started };
}

const sleep = (tenant: TenantFixture, ms: number) => tenant.owner.get(`/orgs/${tenant.slug}/_diagnostics/sleep?ms=${ms}`);

describe('statement timeout from the plan', () => {
  // One connection in the pool: whatever a cancelled query left on it, the next request gets.
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ env: { TEST_ROUTES_ENABLED: 'true', DB_POOL_MAX: '1', LIFECYCLE_SWEEP_INTERVAL_MS: '0' } });
    await addPlan(t, 'timed', 15, TIMEOUT_MS, null);
  });
  afterAll(async () => {
    await t?.close();
  });

  const backend = async () => (await t.pools().control().query<Array<{ pid: number }>>('SELECT pg_backend_pid() AS pid'))[0].pid;

  it.each(TIERS)('cancels a query running past the plan timeout with 503 QUERY_TIMEOUT, and the connection serves the next requests (%s)', async (tier) => {
    const tenant = await createTenant(t, { tier, plan: 'timed' });
    const counters = t.app.get(TenantLimitCounters);
    const timeoutsBefore = counters.statementTimeouts;
    const pid = await backend();

    const { res, ms } = await timed(() => sleep(tenant, TIMEOUT_MS * 4));
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ status: 503, code: 'QUERY_TIMEOUT' });
    expect(res.body.message).toBe(`the query ran longer than the ${TIMEOUT_MS} ms this plan allows and was cancelled`);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // Cancelled at about the plan's timeout, not at the end of the sleep.
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(ms).toBeLessThan(TIMEOUT_MS * 2.5);
    expect(counters.statementTimeouts).toBe(timeoutsBefore + 1);

    // The same pooled connection (not a replacement) serves the next requests.
    expect(await backend()).toBe(pid);
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);
    const created = await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: 'after the timeout' });
    expect(created.status).toBe(201);
    const short = await timed(() => sleep(tenant, TIMEOUT_MS / 4));
    expect(short.res.status).toBe(200);
    expect(short.ms).toBeGreaterThanOrEqual(TIMEOUT_MS / 4 - 10);
    // SET LOCAL ended with the transaction: outside one, the connection has the server's default.
    const [{ statement_timeout: now }] = await t.pools().control().query<Array<{ statement_timeout: string }>>('SHOW statement_timeout');
    const [{ reset_val: atConnect }] = await t.pools().control().query<Array<{ reset_val: string }>>(
      `SELECT reset_val FROM pg_settings WHERE name = 'statement_timeout'`,
    );
    expect(now).toBe('0');
    expect(atConnect).toBe('0');
    expect(await backend()).toBe(pid);
  });

  it('lets a query shorter than the plan timeout finish, and never limits a plan without one', async () => {
    const limited = await createTenant(t, { tier: 'shared', plan: 'timed' });
    const { res, ms } = await timed(() => sleep(limited, TIMEOUT_MS / 2));
    expect(res.status).toBe(200);
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS / 2 - 10);

    await addPlan(t, 'untimed', 16, null, null);
    const unlimited = await createTenant(t, { tier: 'shared', plan: 'untimed' });
    expect((await sleep(unlimited, TIMEOUT_MS * 1.5)).status).toBe(200);
  });

  it('validates the test route input', async () => {
    const tenant = await createTenant(t, { tier: 'shared', plan: 'timed' });
    for (const ms of ['-1', '60001', 'abc', '1.5']) {
      const res = await tenant.owner.get(`/orgs/${tenant.slug}/_diagnostics/sleep?ms=${ms}`);
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ code: 'VALIDATION_FAILED', field: 'ms' });
    }
  });
});

describe('per-tenant concurrency cap (bulkhead) on the shared pool', () => {
  // Four connections: without the cap, ten slow requests of one tenant would take them all.
  let t: TestApp;
  const SLEEP_MS = 700;
  const FIRED = 10;

  beforeAll(async () => {
    t = await startTestApp({ env: { TEST_ROUTES_ENABLED: 'true', DB_POOL_MAX: '4', BULKHEAD_WAIT_MS: String(WAIT_MS), LIFECYCLE_SWEEP_INTERVAL_MS: '0' } });
    await addPlan(t, 'capped', 15, 10_000, CAP);
  });
  afterAll(async () => {
    await t?.close();
  });

  /** Most pg_sleep queries seen running at once in the test database while `during` runs. */
  async function peakSleeping(during: Promise<unknown>): Promise<number> {
    let done = false;
    void during.finally(() => (done = true));
    return withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c: pg.Client) => {
      let peak = 0;
      while (!done) {
        const { rows } = await c.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE 'SELECT pg_sleep%'`,
        );
        peak = Math.max(peak, rows[0].n);
        await new Promise((r) => setTimeout(r, 10));
      }
      return peak;
    });
  }

  it.each(TIERS)('holds a tenant to its cap, queues and then refuses the rest, and keeps serving its neighbour (%s)', async (tier) => {
    const noisy = await createTenant(t, { tier, plan: 'capped' });
    const quiet = await createTenant(t, { tier }); // enterprise: its own, larger cap
    await quiet.owner.post(`/orgs/${quiet.slug}/projects`, { name: 'quiet' });
    // Warm caches (session, role, plan), so requests reach the cap in the order they were sent.
    expect((await sleep(noisy, 0)).status).toBe(200);
    const counters = t.app.get(TenantLimitCounters);
    const bulkhead = t.app.get(TenantBulkhead);
    const before = { ...counters };

    // Sent in order, a few milliseconds apart, so that first come first served can be checked.
    const fired: Array<Promise<{ res: TestResponse; ms: number }>> = [];
    for (let i = 0; i < FIRED; i++) {
      fired.push(timed(() => sleep(noisy, SLEEP_MS)));
      await new Promise((r) => setTimeout(r, 25));
    }
    const all = Promise.all(fired);
    // Meanwhile: the neighbour's requests, one after another, and what the app holds for the noisy tenant.
    const neighbour = (async () => {
      const latencies: number[] = [];
      const statuses: number[] = [];
      let peakSlots = 0;
      let finished = false;
      void all.finally(() => (finished = true));
      while (!finished) {
        peakSlots = Math.max(peakSlots, bulkhead.inUse().get(noisy.id)?.active ?? 0);
        const { res, ms } = await timed(() => quiet.owner.get(`/orgs/${quiet.slug}/projects`));
        statuses.push(res.status);
        latencies.push(ms);
      }
      return { latencies, statuses, peakSlots };
    })();
    const [results, peak, quietRun] = await Promise.all([all, peakSleeping(all), neighbour]);

    // Never more than the cap at once, in the database as in the app.
    expect(peak).toBeLessThanOrEqual(CAP);
    expect(peak).toBeGreaterThanOrEqual(1);
    expect(quietRun.peakSlots).toBeLessThanOrEqual(CAP);

    const ok = results.map((r, i) => ({ ...r, i })).filter((r) => r.res.status === 200);
    const busy = results.filter((r) => r.res.status === 429);
    expect(ok.length + busy.length).toBe(FIRED);
    // Two run at once, two more get the slots they free within the wait; the rest give up.
    expect(ok.length).toBeGreaterThanOrEqual(CAP);
    expect(ok.length).toBeLessThanOrEqual(2 * CAP);
    expect(busy.length).toBeGreaterThanOrEqual(FIRED - 2 * CAP);
    // First come, first served: no later request got a slot an earlier one was refused.
    expect(ok.map((r) => r.i)).toEqual(ok.map((_, n) => n));
    for (const { res, ms } of busy) {
      expect(res.body).toMatchObject({ status: 429, code: 'TENANT_BUSY' });
      expect(res.body.message).toContain(`${CAP} requests running`);
      expect(res.headers.get('retry-after')).toBe('1');
      // Refused after waiting for a slot, not at once.
      expect(ms).toBeGreaterThanOrEqual(WAIT_MS - 50);
    }

    // The neighbour was served throughout, promptly (a slow request would have waited ~SLEEP_MS for a connection).
    expect(quietRun.statuses.length).toBeGreaterThan(5);
    expect(quietRun.statuses.every((s) => s === 200)).toBe(true);
    expect(Math.max(...quietRun.latencies)).toBeLessThan(SLEEP_MS * 0.6);

    // Every slot was given back; the noisy tenant is served again at once.
    expect(bulkhead.inUse().has(noisy.id)).toBe(false);
    expect((await sleep(noisy, 10)).status).toBe(200);
    expect(counters.bulkheadWaits - before.bulkheadWaits).toBeGreaterThanOrEqual(FIRED - CAP - 1);
    expect(counters.bulkheadRejections - before.bulkheadRejections).toBe(busy.length);
  });

  it('gives the slot back when the request fails, and when its client goes away', async () => {
    const noisy = await createTenant(t, { tier: 'shared', plan: 'capped' });
    const bulkhead = t.app.get(TenantBulkhead);
    // Failing requests (a validation error after the slot was taken) leave nothing held.
    for (let i = 0; i < CAP * 3; i++) expect((await noisy.owner.get(`/orgs/${noisy.slug}/_diagnostics/sleep?ms=-1`)).status).toBe(400);
    expect(bulkhead.inUse().has(noisy.id)).toBe(false);

    // Clients that give up, while running and while waiting (plain sockets: closed when told, nothing reopened).
    const url = new URL(`${noisy.owner.baseUrl}/orgs/${noisy.slug}/_diagnostics/sleep?ms=800`);
    const gone = Array.from({ length: CAP + 2 }, () => {
      const req = http.get(url, { agent: false, headers: { authorization: `Bearer ${noisy.owner.token}` } });
      req.on('error', () => undefined);
      return req;
    });
    const until = Date.now() + 2_000;
    while ((bulkhead.inUse().get(noisy.id)?.waiting ?? 0) < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(bulkhead.inUse().get(noisy.id)).toEqual({ active: CAP, waiting: 2 });
    gone.forEach((req) => req.destroy());
    // The waiters leave the queue at once; the running ones give their slots back when their query ends.
    const left = Date.now() + 300;
    while ((bulkhead.inUse().get(noisy.id)?.waiting ?? 0) > 0 && Date.now() < left) await new Promise((r) => setTimeout(r, 10));
    expect(bulkhead.inUse().get(noisy.id)).toEqual({ active: CAP, waiting: 0 });
    const settled = Date.now() + 3_000;
    while (bulkhead.inUse().has(noisy.id) && Date.now() < settled) await new Promise((r) => setTimeout(r, 10));
    expect(bulkhead.inUse().has(noisy.id)).toBe(false);
    const { res, ms } = await timed(() => sleep(noisy, 10));
    expect(res.status).toBe(200);
    expect(ms).toBeLessThan(WAIT_MS / 2);
  });
});
