import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { HttpClient, withSuperuser } from '../../libs/testing/index.js';
import { createTenant, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Two app instances on one control plane: routes and memberships are cached in each, and a
 * change made through either instance (or by plain SQL) reaches both at once via LISTEN/NOTIFY.
 */
let one: TestApp;
let two: TestApp;
let tenant: TenantFixture;
let ownerOnTwo: HttpClient;

beforeAll(async () => {
  const JWT_SECRET = randomBytes(32).toString('hex');
  one = await startTestApp({ env: { JWT_SECRET } });
  two = await startTestApp({ env: { JWT_SECRET }, database: one.database });
  tenant = await createTenant(one, { tier: 'shared' });
  ownerOnTwo = await two.login(tenant.ownerEmail);
});
afterAll(async () => {
  await two?.close();
  await one?.close();
});

async function asOwner<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const h = one.harness;
  const c = new pg.Client({ host: '127.0.0.1', port: h.primaryPort, user: h.ownerUser, password: h.ownerPassword, database: one.database });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Polls until the status arrives; a NOTIFY takes milliseconds, the TTL would take a minute. */
async function eventually(fn: () => Promise<number>, status: number, withinMs = 3_000): Promise<number> {
  const until = Date.now() + withinMs;
  let last = await fn();
  while (last !== status && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 25));
    last = await fn();
  }
  return last;
}

describe('routing cache across app instances', () => {
  it('drops a removed member everywhere on the next request', async () => {
    const email = `leaver@${tenant.slug}.test`;
    const added = await tenant.owner.post(`/orgs/${tenant.slug}/members`, { email, role: 'member' });
    const leaverOnTwo = await two.login(email);
    // Cache the membership on instance two.
    expect((await leaverOnTwo.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);
    expect((await leaverOnTwo.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);
    expect((await tenant.owner.delete(`/orgs/${tenant.slug}/members/${added.body.userId}`)).status).toBe(204);
    expect(await eventually(async () => (await leaverOnTwo.get(`/orgs/${tenant.slug}/projects`)).status, 404)).toBe(404);
  });

  it('suspending by plain SQL answers 403 on both instances; reactivating restores access', async () => {
    expect((await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);
    await asOwner((c) => c.query(`UPDATE control.tenants SET status = 'suspended', status_reason = 'unpaid invoice' WHERE id = $1`, [tenant.id]));
    expect(await eventually(async () => (await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status, 403)).toBe(403);
    // Each instance hears the NOTIFY on its own listener: instance one may be a moment behind two.
    expect(await eventually(async () => (await tenant.owner.get(`/orgs/${tenant.slug}/projects`)).status, 403)).toBe(403);
    const res = await tenant.owner.get(`/orgs/${tenant.slug}/projects`);
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ code: 'TENANT_SUSPENDED', message: expect.stringContaining('unpaid invoice') });
    await asOwner((c) => c.query(`UPDATE control.tenants SET status = 'active', status_reason = NULL WHERE id = $1`, [tenant.id]));
    expect(await eventually(async () => (await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status, 200)).toBe(200);
    expect(await eventually(async () => (await tenant.owner.get(`/orgs/${tenant.slug}/projects`)).status, 200)).toBe(200);
  });

  it('serves no stale route while the listener is down, and caches again once it is back', async () => {
    expect((await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);
    await withSuperuser(one.harness, one.harness.primaryPort, 'postgres', (c) =>
      c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tenancy-routing-listener'`, [one.database]),
    );
    await asOwner((c) => c.query(`UPDATE control.tenants SET status = 'suspended' WHERE id = $1`, [tenant.id]));
    expect(await eventually(async () => (await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status, 403, 500)).toBe(403);
    await asOwner((c) => c.query(`UPDATE control.tenants SET status = 'active' WHERE id = $1`, [tenant.id]));
    // The listeners reconnect within about a second; health says so.
    expect(await eventually(async () => (await two.http.get('/health')).status, 200, 5_000)).toBe(200);
    expect(await eventually(async () => (await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status, 200)).toBe(200);
  });
});
