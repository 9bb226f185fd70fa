import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { createHmac } from 'node:crypto';
import pg from 'pg';
import { ownerUrl } from '../../libs/testing/index.js';
import { SessionStore } from '../../src/auth/session-store.service.js';
import { createTenant, TenantFixture, uniqueSlug } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Server-side sessions on two app instances: every token names a session; logout, "sign out
 * everywhere" and revocation by SQL take effect on the next request on both instances; a token
 * without a session, or whose session is gone, is refused; one token works in every tenant of
 * its person; the development login refuses people whose company enforces SSO.
 */
let one: TestApp;
let two: TestApp;
let JWT_SECRET: string;

beforeAll(async () => {
  JWT_SECRET = randomBytes(32).toString('hex');
  one = await startTestApp({ env: { JWT_SECRET } });
  two = await startTestApp({ env: { JWT_SECRET }, database: one.database });
});
afterAll(async () => {
  await two?.close();
  await one?.close();
});

async function owner<T>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: ownerUrl(one.harness, one.harness.primaryPort, one.database) });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

/** A token signed with the right secret by hand: valid signature, but what session does it name? */
function forge(payload: Record<string, unknown>): string {
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc({ iss: 'tenancy-platform', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600, ...payload })}`;
  return `${body}.${createHmac('sha256', JWT_SECRET).update(body).digest('base64url')}`;
}

describe('sessions', () => {
  let tenant: TenantFixture;
  beforeAll(async () => {
    tenant = await createTenant(one, { tier: 'shared' });
  });

  it('logout ends this session on every instance, and only this one', async () => {
    const a = await one.login(tenant.ownerEmail);
    const b = await one.login(tenant.ownerEmail);
    const aOnTwo = two.http.as(a.token!);
    expect((await aOnTwo.get('/me')).status).toBe(200);
    expect((await a.post('/auth/logout')).status).toBe(204);
    for (const res of [await a.get('/me'), await aOnTwo.get('/me')]) {
      expect(res.status).toBe(401);
      expect(res.body.code).toBe('UNAUTHENTICATED');
    }
    expect((await b.get('/me')).status).toBe(200);
  });

  it('sign out everywhere ends every session of the person, on both instances', async () => {
    const email = `everywhere@${uniqueSlug('x')}.test`;
    const s1 = await one.login(email);
    const s2 = await two.login(email);
    await two.login(email);
    const other = await one.login(tenant.ownerEmail);
    expect((await s2.get('/me')).status).toBe(200);
    const res = await s1.post('/auth/logout/all');
    expect(res.status).toBe(200);
    expect(res.body.revoked).toBe(3);
    expect((await s1.get('/me')).status).toBe(401);
    expect((await s2.get('/me')).status).toBe(401);
    expect((await other.get('/me')).status).toBe(200);
  });

  it('a session revoked by plain SQL is refused at once, even after it was cached', async () => {
    const s = await one.login(tenant.ownerEmail);
    const onTwo = two.http.as(s.token!);
    expect((await s.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);
    expect((await onTwo.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);
    const me = (await s.get('/me')).body.id as string;
    await owner(`UPDATE control.sessions SET revoked_at = now(), revoked_reason = 'test' WHERE user_id = $1 AND revoked_at IS NULL`, [me]);
    const until = Date.now() + 5_000;
    while (Date.now() < until && ((await s.get('/me')).status !== 401 || (await onTwo.get('/me')).status !== 401)) await new Promise((r) => setTimeout(r, 10));
    expect((await s.get(`/orgs/${tenant.slug}/projects`)).status).toBe(401);
    expect((await onTwo.get(`/orgs/${tenant.slug}/projects`)).status).toBe(401);
  });

  it('refuses a correctly signed token that names no session, a stranger\'s session or an expired one', async () => {
    const s = await one.login(tenant.ownerEmail);
    const me = (await s.get('/me')).body.id as string;
    const [session] = await owner<{ id: string }>('SELECT id FROM control.sessions WHERE user_id = $1 AND revoked_at IS NULL LIMIT 1', [me]);
    const stranger = await one.login(`stranger@${uniqueSlug('x')}.test`);
    const strangerId = (await stranger.get('/me')).body.id as string;
    const cases = [
      forge({ sub: me, email: tenant.ownerEmail }),
      forge({ sub: me, email: tenant.ownerEmail, sid: '0190a6b8-0000-7000-8000-000000000000' }),
      forge({ sub: strangerId, email: 'stranger@x.test', sid: session.id }),
    ];
    for (const token of cases) expect((await one.http.as(token).get('/me')).status).toBe(401);
    // The control case: the same forge with the right session passes, so the refusals above are about the session.
    expect((await one.http.as(forge({ sub: me, email: tenant.ownerEmail, sid: session.id })).get('/me')).status).toBe(200);
    await owner(`UPDATE control.sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, [session.id]);
    // Instance two never saw it: it reads the session and finds it expired.
    const expired = await two.http.as(forge({ sub: me, email: tenant.ownerEmail, sid: session.id })).get('/me');
    expect(expired.status).toBe(401);
    expect(expired.body.message).toMatch(/session has ended/);
  });
});

describe('forgetting ended sessions', () => {
  it('deletes sessions ended a week ago or more, and no other', async () => {
    const s = await one.login(`old@${uniqueSlug('x')}.test`);
    const me = (await s.get('/me')).body.id as string;
    await owner(
      `INSERT INTO control.sessions (id, user_id, method, expires_at, created_at) VALUES
         (gen_random_uuid(), $1, 'dev', now() - interval '8 days', now() - interval '9 days'),
         (gen_random_uuid(), $1, 'dev', now() - interval '6 days', now() - interval '7 days')`,
      [me],
    );
    expect(await one.app.get(SessionStore).purgeEnded()).toBeGreaterThanOrEqual(1);
    const left = await owner<{ expired: boolean }>('SELECT expires_at < now() AS expired FROM control.sessions WHERE user_id = $1 ORDER BY expires_at', [me]);
    expect(left.map((r) => r.expired)).toEqual([true, false]);
    expect((await s.get('/me')).status).toBe(200);
  });
});

describe('one person in several tenants', () => {
  it('lists them at GET /me/tenants, and one token works in each', async () => {
    const email = `multi@${uniqueSlug('x')}.test`;
    const tenants = [await createTenant(one, { tier: 'shared' }), await createTenant(one, { tier: 'schema' }), await createTenant(one, { tier: 'dedicated' })];
    for (const [i, t] of tenants.entries()) {
      const res = await t.owner.post(`/orgs/${t.slug}/members`, { email, role: i === 0 ? 'admin' : 'viewer' });
      expect(res.status).toBe(201);
    }
    const person = await one.login(email);
    const list = await person.get('/me/tenants');
    expect(list.status).toBe(200);
    expect(list.body.items.map((t: { slug: string; role: string }) => [t.slug, t.role]).sort()).toEqual(
      tenants.map((t, i) => [t.slug, i === 0 ? 'admin' : 'viewer']).sort(),
    );
    for (const t of tenants) expect((await person.get(`/orgs/${t.slug}/projects`)).status).toBe(200);
    const outsider = await createTenant(one, { tier: 'shared' });
    expect((await person.get(`/orgs/${outsider.slug}/projects`)).status).toBe(404);
    expect((await one.http.get('/me/tenants')).status).toBe(401);
  });
});

describe('SSO enforcement and the development login', () => {
  it('refuses the development login for an enforced, verified domain, and only then', async () => {
    const tenant = await createTenant(one, { tier: 'shared' });
    const domain = `${uniqueSlug('corp')}.example.com`;
    const org = `org_${randomBytes(8).toString('hex')}`;
    await owner('INSERT INTO control.sso_links (tenant_id, workos_organization_id) VALUES ($1, $2)', [tenant.id, org]);
    await owner('INSERT INTO control.sso_domains (domain, tenant_id, verified) VALUES ($1, $2, false)', [domain, tenant.id]);
    const login = (email: string) => one.http.post('/auth/dev/login', { email });
    expect((await login(`jane@${domain}`)).status).toBe(200); // not enforced yet
    await owner('UPDATE control.sso_links SET enforce_sso = true WHERE tenant_id = $1', [tenant.id]);
    expect((await login(`jane@${domain}`)).status).toBe(200); // enforced, but the domain is not verified
    await owner('UPDATE control.sso_domains SET verified = true WHERE domain = $1', [domain]);
    const refused = await login(`Jane@${domain.toUpperCase()}`);
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ code: 'SSO_REQUIRED', field: 'email' });
    expect(refused.body.message).toContain('/auth/sso/authorize');
    expect((await login(`jane@other-${domain}`)).status).toBe(200);
  });
});
