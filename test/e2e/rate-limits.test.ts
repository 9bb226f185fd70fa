import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { HttpClient, TestResponse, withSuperuser } from '../../libs/testing/index.js';
import { Entitlements } from '../../src/billing/entitlements.service.js';
import { TenantLimitCounters } from '../../src/tenancy/bulkhead.js';
import { FixedWindowThrottlerStorage, getStorageToken } from '../../src/tenancy/tenant-throttler.guard.js';
import { createTenant, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Per-tenant and per-user rate limits from the plan (@nestjs/throttler, TenantThrottlerGuard):
 * a tenant over its requests per minute gets 429 RATE_LIMITED with Retry-After and the
 * X-RateLimit headers while other tenants carry on; one user may use only their share of the
 * tenant's budget; non-members spend none of it; unlimited plans are never counted.
 */
const RPM = 12;
const USER_SHARE = Math.ceil((RPM * 50) / 100);

let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ env: { RATE_LIMIT_USER_PERCENT: '50', LIFECYCLE_SWEEP_INTERVAL_MS: '0' } });
  // A plan with a small rate and no other per-request limit.
  await control(`INSERT INTO control.plans (key, name, rank) VALUES ('rated', 'Rated', 15)`);
  await control(
    `INSERT INTO control.plan_features (plan_key, feature, kind, limit_value, enabled) VALUES
       ('rated', 'seats', 'limit', NULL, NULL), ('rated', 'projects', 'limit', NULL, NULL), ('rated', 'tasks_per_project', 'limit', NULL, NULL),
       ('rated', 'api_requests_per_minute', 'limit', $1, NULL), ('rated', 'statement_timeout_ms', 'limit', NULL, NULL),
       ('rated', 'concurrent_requests', 'limit', NULL, NULL),
       ('rated', 'tier_shared', 'flag', NULL, true), ('rated', 'tier_schema', 'flag', NULL, true), ('rated', 'tier_dedicated', 'flag', NULL, true)`,
    [RPM],
  );
  // The app hears of the new plan through NOTIFY; wait until it knows it.
  const entitlements = t.app.get(Entitlements);
  const until = Date.now() + 5_000;
  while (!(await entitlements.plan('rated'))) {
    if (Date.now() > until) throw new Error('the app never saw the new plan');
    await new Promise((r) => setTimeout(r, 20));
  }
});
afterAll(async () => {
  await t?.close();
});

async function control(sql: string, params: unknown[] = []): Promise<void> {
  await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) => c.query(sql, params));
}

const header = (res: TestResponse, name: string) => res.headers.get(name);
const num = (res: TestResponse, name: string) => Number(res.headers.get(name));

async function addMember(tenant: TenantFixture, email: string): Promise<HttpClient> {
  const res = await tenant.owner.post(`/orgs/${tenant.slug}/members`, { email, role: 'member' });
  expect(res.status).toBe(201);
  return t.login(email);
}

describe('rate limits per tenant and per user', () => {
  let a: TenantFixture;
  let b: TenantFixture;
  let alice: HttpClient;
  let bob: HttpClient;

  beforeAll(async () => {
    a = await createTenant(t, { tier: 'shared', plan: 'rated' });
    b = await createTenant(t, { tier: 'schema', plan: 'rated' });
    alice = await addMember(a, `alice@${a.slug}.test`);
    bob = await addMember(a, `bob@${a.slug}.test`);
  });

  it('counts only members, gives each user their share, refuses the tenant past its budget, and leaves other tenants alone', async () => {
    const projects = `/orgs/${a.slug}/projects`;
    const counters = t.app.get(TenantLimitCounters);
    const before = { ...counters };

    // Adding the two members cost the owner (and so the tenant) two requests.
    const owner = await a.owner.get(projects);
    expect(owner.status).toBe(200);
    expect(num(owner, 'x-ratelimit-limit-tenant')).toBe(RPM);
    expect(num(owner, 'x-ratelimit-remaining-tenant')).toBe(RPM - 3);
    expect(num(owner, 'x-ratelimit-limit-user')).toBe(USER_SHARE);
    expect(num(owner, 'x-ratelimit-remaining-user')).toBe(USER_SHARE - 3);
    const reset = num(owner, 'x-ratelimit-reset-tenant');
    expect(reset).toBeGreaterThanOrEqual(1);
    expect(reset).toBeLessThanOrEqual(60);
    // Unsuffixed: whichever leaves fewer requests (here the owner's own share).
    expect(num(owner, 'x-ratelimit-limit')).toBe(USER_SHARE);
    expect(num(owner, 'x-ratelimit-remaining')).toBe(USER_SHARE - 3);

    // A signed-in stranger is told the tenant does not exist, and spends none of its budget.
    const stranger = await t.login(`stranger@${a.slug}.test`);
    for (let i = 0; i < RPM + 5; i++) {
      const res = await stranger.get(projects);
      expect(res.status).toBe(404);
      expect(header(res, 'x-ratelimit-limit-tenant')).toBeNull();
    }

    // Alice uses her whole share; the requests before the limit are fine.
    for (let i = 1; i <= USER_SHARE; i++) {
      const res = await alice.get(projects);
      expect(res.status).toBe(200);
      expect(num(res, 'x-ratelimit-remaining-user')).toBe(USER_SHARE - i);
      expect(num(res, 'x-ratelimit-remaining-tenant')).toBe(RPM - 3 - i);
    }
    const aliceOver = await alice.get(projects);
    expect(aliceOver.status).toBe(429);
    expect(aliceOver.body).toMatchObject({ status: 429, code: 'RATE_LIMITED' });
    expect(aliceOver.body.message).toContain(`${USER_SHARE} requests per minute this plan allows one user`);
    const aliceRetry = Number(header(aliceOver, 'retry-after'));
    expect(aliceRetry).toBeGreaterThanOrEqual(1);
    expect(aliceRetry).toBeLessThanOrEqual(60);
    expect(num(aliceOver, 'x-ratelimit-remaining-user')).toBe(0);
    expect(num(aliceOver, 'x-ratelimit-remaining')).toBe(0);
    expect(num(aliceOver, 'x-ratelimit-reset')).toBe(aliceRetry);
    // Refused by her own share, she did not spend the tenant's: Bob has exactly what is left.
    const left = RPM - 3 - USER_SHARE;
    expect(left).toBeGreaterThan(0);
    for (let i = 1; i <= left; i++) {
      const res = await bob.get(projects);
      expect(res.status).toBe(200);
      expect(num(res, 'x-ratelimit-remaining-tenant')).toBe(left - i);
    }

    // The tenant's budget is spent: everyone in it is refused, with the tenant's headers.
    for (const who of [bob, a.owner]) {
      const res = await who.get(projects);
      expect(res.status).toBe(429);
      expect(res.body).toMatchObject({ code: 'RATE_LIMITED' });
      expect(res.body.message).toContain(`this tenant has made more than the ${RPM} requests per minute`);
      const retry = Number(header(res, 'retry-after'));
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(60);
      expect(num(res, 'x-ratelimit-limit-tenant')).toBe(RPM);
      expect(num(res, 'x-ratelimit-remaining-tenant')).toBe(0);
      expect(num(res, 'x-ratelimit-limit')).toBe(RPM);
      expect(num(res, 'x-ratelimit-remaining')).toBe(0);
      expect(num(res, 'x-ratelimit-reset')).toBe(retry);
    }
    // Writes too: the limit is per tenant, not per route.
    expect((await bob.post(projects, { name: 'over the limit' })).status).toBe(429);

    // The other tenant on the same plan has its own budget.
    for (let i = 1; i <= 3; i++) {
      const res = await b.owner.get(`/orgs/${b.slug}/projects`);
      expect(res.status).toBe(200);
      expect(num(res, 'x-ratelimit-remaining-tenant')).toBe(RPM - i);
    }
    // Routes outside tenants are not throttled by the tenant limits.
    const me = await a.owner.get('/me');
    expect(me.status).toBe(200);
    expect(header(me, 'x-ratelimit-limit')).toBeNull();

    expect(counters.throttledUser - before.throttledUser).toBe(1);
    expect(counters.throttledTenant - before.throttledTenant).toBe(3);
  });

  it('never counts a tenant whose plan has no rate limit', async () => {
    const unlimited = await createTenant(t, { tier: 'shared' }); // the test app's default: enterprise
    for (let i = 0; i < RPM * 3; i++) {
      const res = await unlimited.owner.get(`/orgs/${unlimited.slug}/projects`);
      expect(res.status).toBe(200);
      expect(header(res, 'x-ratelimit-limit')).toBeNull();
      expect(header(res, 'retry-after')).toBeNull();
    }
    const storage = t.app.get<FixedWindowThrottlerStorage>(getStorageToken());
    expect(storage).toBeInstanceOf(FixedWindowThrottlerStorage);
    expect(storage.hitsOf(unlimited.id, 'tenant')).toBe(0);
    // ...while a rated tenant's hits are where the guard counts them.
    const rated = await createTenant(t, { tier: 'shared', plan: 'rated' });
    expect((await rated.owner.get(`/orgs/${rated.slug}/projects`)).status).toBe(200);
    expect(storage.hitsOf(rated.id, 'tenant')).toBe(1);
  });

  it('applies a new rate as soon as the plan changes', async () => {
    const c = await createTenant(t, { tier: 'shared', plan: 'rated' });
    const path = `/orgs/${c.slug}/projects`;
    expect(num(await c.owner.get(path), 'x-ratelimit-limit-tenant')).toBe(RPM);
    await control(`UPDATE control.plan_features SET limit_value = $1 WHERE plan_key = 'rated' AND feature = 'api_requests_per_minute'`, [RPM * 10]);
    try {
      const until = Date.now() + 5_000;
      let limit = RPM;
      while (limit !== RPM * 10 && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 20));
        limit = num(await c.owner.get(path), 'x-ratelimit-limit-tenant');
      }
      expect(limit).toBe(RPM * 10);
    } finally {
      await control(`UPDATE control.plan_features SET limit_value = $1 WHERE plan_key = 'rated' AND feature = 'api_requests_per_minute'`, [RPM]);
    }
  });
});
