import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHmac, randomBytes } from 'node:crypto';
import pg from 'pg';
import { HttpClient, ownerUrl } from '../../libs/testing/index.js';
import { startWorkOSStandIn, type WorkOSStandIn } from '../../libs/testing/workos-stand-in.js';
import type { Tier } from '../../src/tenancy/tenant-route.js';
import { createTenant, TenantFixture, uniqueSlug } from '../support/factories.js';
import { PLATFORM_ADMIN, startTestApp, TestApp } from '../support/test-app.js';

/**
 * SAML sign-in through WorkOS, with the real SDK talking to the local WorkOS stand-in: linking a
 * tenant, just-in-time members with the tenant's role mapping on every tier, and every way a
 * sign-in must be refused (another organization, a bad, reused, forged or expired state, a bad
 * code, an unknown domain, an email outside the verified domains, IdP-initiated where not allowed).
 */
let standIn: WorkOSStandIn;
let t: TestApp;
let jwtSecret: string;

beforeAll(async () => {
  standIn = await startWorkOSStandIn({ apiKey: `sk_test_${randomBytes(8).toString('hex')}`, clientId: 'client_sso_e2e' });
  jwtSecret = randomBytes(32).toString('hex');
  t = await startTestApp({ env: { ...standIn.env, JWT_SECRET: jwtSecret, WORKOS_REDIRECT_URI: 'http://127.0.0.1:9/auth/sso/callback' } });
});
afterAll(async () => {
  await t?.close();
  await standIn?.stop();
});

async function control<T>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: ownerUrl(t.harness, t.harness.primaryPort, t.database) });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

interface Linked {
  tenant: TenantFixture;
  org: string;
  domain: string;
}

/** A tenant linked to a new WorkOS organization with one domain, verified, and an active connection. */
async function linkedTenant(tier: Tier, mapping: Record<string, string> = {}): Promise<Linked> {
  const tenant = await createTenant(t, { tier });
  const domain = `${uniqueSlug('corp')}.example.com`;
  const linked = await tenant.owner.post(`/orgs/${tenant.slug}/sso`, { domains: [domain] });
  expect(linked.status).toBe(201);
  expect(linked.body).toMatchObject({ linked: true, domains: [{ domain, verified: false }], enforceSso: false, connectionState: 'none' });
  const org = linked.body.workosOrganizationId as string;
  await standIn.createConnection(org);
  await standIn.verifyDomain(org, domain);
  const state = await tenant.owner.get(`/orgs/${tenant.slug}/sso`);
  expect(state.body).toMatchObject({ domains: [{ domain, verified: true }], fresh: true });
  if (Object.keys(mapping).length) {
    const patched = await tenant.owner.patch(`/orgs/${tenant.slug}/sso`, { roleMapping: mapping, defaultRole: 'viewer' });
    expect(patched.status).toBe(200);
  }
  return { tenant, org, domain };
}

/** The browser's part: authorize at the app, follow to WorkOS, come back with code and state. */
async function startSignIn(query: string): Promise<{ code: string; state: string }> {
  const res = await fetch(`${t.http.baseUrl}/auth/sso/authorize?${query}`, { redirect: 'manual' });
  expect(res.status).toBe(302);
  const at = await standIn.authorize(res.headers.get('location')!);
  expect(at.status).toBe(302);
  return { code: at.code!, state: at.state! };
}

const callback = (q: Record<string, string>) => t.http.get(`/auth/sso/callback?${new URLSearchParams(q).toString()}`);

describe.each(['shared', 'schema', 'dedicated'] as Tier[])('SSO sign-in to a %s tenant', (tier) => {
  let l: Linked;
  beforeAll(async () => {
    l = await linkedTenant(tier, { 'okta-admins': 'admin', engineering: 'member' });
  });

  it('provisions the person just in time with the mapped role, and the token works', async () => {
    const email = `jane@${l.domain}`;
    await standIn.queueProfiles(l.org, { email, idp_id: 'idp-jane', groups: ['okta-admins', 'staff'] });
    const signedIn = await callback(await startSignIn(`email=${encodeURIComponent(email)}`));
    expect(signedIn.status).toBe(200);
    expect(signedIn.body).toMatchObject({ tokenType: 'Bearer', role: 'admin', tenant: { id: l.tenant.id, slug: l.tenant.slug }, user: { email, platformAdmin: false } });
    const jane = t.http.as(signedIn.body.accessToken);
    expect((await jane.post(`/orgs/${l.tenant.slug}/projects`, { name: 'from SSO' })).status).toBe(201);
    expect((await jane.get('/me/tenants')).body.items).toEqual([expect.objectContaining({ slug: l.tenant.slug, role: 'admin' })]);
    const members = (await l.tenant.owner.get(`/orgs/${l.tenant.slug}/members`)).body.items as Array<{ email: string; role: string }>;
    expect(members.find((m) => m.email === email)?.role).toBe('admin');
    const signIns = (await l.tenant.owner.get(`/orgs/${l.tenant.slug}/audit?action=sso.signed_in`)).body.items;
    expect(signIns).toEqual([expect.objectContaining({ actorKind: 'identity_provider', targetId: signedIn.body.user.id, metadata: { role: 'admin', idpInitiated: false } })]);
  });

  it('recomputes the role at the next sign-in', async () => {
    const email = `jane@${l.domain}`;
    await standIn.queueProfiles(l.org, { email, idp_id: 'idp-jane', groups: ['engineering'] });
    const again = await callback(await startSignIn(`org=${l.tenant.slug}`));
    expect(again.status).toBe(200);
    expect(again.body.role).toBe('member');
    await standIn.queueProfiles(l.org, { email, idp_id: 'idp-jane', groups: ['unmapped'] });
    expect((await callback(await startSignIn(`org=${l.tenant.slug}`))).body.role).toBe('viewer');
  });
});

describe('refused sign-ins', () => {
  let a: Linked;
  let b: Linked;
  beforeAll(async () => {
    a = await linkedTenant('shared', { admins: 'admin' });
    b = await linkedTenant('schema');
  });

  it("refuses a profile from another WorkOS organization than the state's tenant, and changes nothing", async () => {
    const membersBefore = (await a.tenant.owner.get(`/orgs/${a.tenant.slug}/members`)).body.items;
    const forA = await startSignIn(`org=${a.tenant.slug}`);
    await standIn.queueProfiles(b.org, { email: `mallory@${b.domain}`, groups: ['admins'] });
    const fromB = await startSignIn(`org=${b.tenant.slug}`);
    const res = await callback({ code: fromB.code, state: forA.state });
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ code: 'SSO_ORGANIZATION_MISMATCH', requestId: expect.any(String) });
    expect((await a.tenant.owner.get(`/orgs/${a.tenant.slug}/members`)).body.items).toEqual(membersBefore);
    expect(await control('SELECT 1 FROM control.users WHERE email = $1', [`mallory@${b.domain}`])).toHaveLength(0);
  });

  it('refuses a reused, forged, expired or missing-tenant state', async () => {
    await standIn.queueProfiles(a.org, { email: `joe@${a.domain}` });
    const first = await startSignIn(`org=${a.tenant.slug}`);
    expect((await callback(first)).status).toBe(200);
    const reused = await callback(first);
    expect(reused.status).toBe(400);
    expect(reused.body).toMatchObject({ code: 'SSO_STATE_INVALID', field: 'state' });
    expect(reused.body.message).toContain('already used');

    const fresh = await startSignIn(`org=${a.tenant.slug}`);
    const [payload, mac] = fresh.state.split('.');
    const tampered = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), t: b.tenant.id })).toString('base64url');
    for (const state of [`${tampered}.${mac}`, `${payload}.${'A'.repeat(mac.length)}`, 'not-a-state', `${payload}.${mac}.extra`]) {
      const res = await callback({ code: fresh.code, state });
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('SSO_STATE_INVALID');
    }
    // Signed with the right key but expired: the key is derived from the token secret (see SsoService).
    const key = createHmac('sha256', jwtSecret).update('sso-state/v1').digest();
    const old = Buffer.from(JSON.stringify({ t: a.tenant.id, n: randomBytes(8).toString('hex'), e: Date.now() - 1000 })).toString('base64url');
    const expired = await callback({ code: fresh.code, state: `${old}.${createHmac('sha256', key).update(old).digest('base64url')}` });
    expect(expired.status).toBe(400);
    expect(expired.body.message).toContain('expired');
  });

  it('refuses a bad code, an unknown domain, and an email outside the verified domains', async () => {
    const { state } = await startSignIn(`org=${a.tenant.slug}`);
    const bad = await callback({ code: 'not-a-code', state });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('SSO_CODE_INVALID');

    const unknown = await t.http.get('/auth/sso/authorize?email=someone%40unknown-domain.example.org');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: 'SSO_DOMAIN_NOT_FOUND', field: 'email' });

    await standIn.queueProfiles(a.org, { email: 'outsider@gmail.com' });
    const outside = await callback(await startSignIn(`org=${a.tenant.slug}`));
    expect(outside.status).toBe(403);
    expect(outside.body.code).toBe('SSO_EMAIL_DOMAIN_NOT_ALLOWED');
    expect(await control('SELECT 1 FROM control.users WHERE email = $1', ['outsider@gmail.com'])).toHaveLength(0);
  });

  it('accepts a sign-in started at the identity provider only where the tenant allows it', async () => {
    await standIn.queueProfiles(a.org, { email: `idp@${a.domain}` });
    const { code } = await startSignIn(`org=${a.tenant.slug}`);
    const refused = await callback({ code });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('SSO_IDP_INITIATED_NOT_ALLOWED');
    expect((await a.tenant.owner.patch(`/orgs/${a.tenant.slug}/sso`, { allowIdpInitiated: true })).status).toBe(200);
    await standIn.queueProfiles(a.org, { email: `idp@${a.domain}` });
    const second = await startSignIn(`org=${a.tenant.slug}`);
    const accepted = await callback({ code: second.code });
    expect(accepted.status).toBe(200);
    expect(accepted.body.tenant.slug).toBe(a.tenant.slug);
  });

  it('refuses a person the tenant\'s directory has deprovisioned, until it provisions them again', async () => {
    const email = `gone@${a.domain}`;
    await standIn.queueProfiles(a.org, { email, idp_id: 'idp-gone' });
    const first = await callback(await startSignIn(`org=${a.tenant.slug}`));
    expect(first.status).toBe(200);
    // As directory sync leaves it (see directory-sync.test.ts): the identity is the directory's, and inactive.
    await control(`UPDATE control.sso_identities SET directory_user_id = 'directory_user_gone', state = 'inactive' WHERE idp_id = 'idp-gone'`);
    await standIn.queueProfiles(a.org, { email, idp_id: 'idp-gone' });
    const refused = await callback(await startSignIn(`org=${a.tenant.slug}`));
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('SSO_USER_DEPROVISIONED');
    await control(`UPDATE control.sso_identities SET state = 'active' WHERE idp_id = 'idp-gone'`);
    await standIn.queueProfiles(a.org, { email, idp_id: 'idp-gone' });
    expect((await callback(await startSignIn(`org=${a.tenant.slug}`))).status).toBe(200);
  });

  it('400 for malformed queries, naming the field', async () => {
    for (const [path, field] of [
      ['/auth/sso/authorize', 'email'],
      ['/auth/sso/authorize?email=x%40y.test&org=acme', 'org'],
      ['/auth/sso/authorize?email=nope', 'email'],
      ['/auth/sso/authorize?org=Not_A_Slug', 'org'],
      ['/auth/sso/callback', 'code'],
      ['/auth/sso/callback?code=x&extra=1', 'extra'],
    ] as const) {
      const res = await t.http.get(path);
      expect(res.status).toBe(400);
      expect(res.body.field).toBe(field);
    }
    const failed = await callback({ error: 'access_denied', error_description: 'the user is suspended', state: 'x' });
    expect(failed.status).toBe(400);
    expect(failed.body.message).toContain('access_denied');
  });
});

describe('role mapping, enforcement and the platform boundary', () => {
  it("an identity provider never makes anyone owner unless mapped, and only owners may map to 'owner'", async () => {
    const l = await linkedTenant('shared');
    await standIn.queueProfiles(l.org, { email: `boss@${l.domain}`, role: { slug: 'owner' }, groups: ['owner', 'admin'] });
    expect((await callback(await startSignIn(`org=${l.tenant.slug}`))).body.role).toBe('member');

    const admin = await t.login(`admin-${randomBytes(3).toString('hex')}@${uniqueSlug('x')}.test`);
    const me = (await admin.get('/me')).body;
    expect((await l.tenant.owner.post(`/orgs/${l.tenant.slug}/members`, { email: me.email, role: 'admin' })).status).toBe(201);
    const escalate = await admin.patch(`/orgs/${l.tenant.slug}/sso`, { roleMapping: { 'okta-admins': 'owner' } });
    expect(escalate.status).toBe(403);
    expect(escalate.body.code).toBe('ROLE_FORBIDDEN');
    expect((await l.tenant.owner.patch(`/orgs/${l.tenant.slug}/sso`, { roleMapping: { founders: 'owner' } })).status).toBe(200);
    await standIn.queueProfiles(l.org, { email: `boss@${l.domain}`, groups: ['founders'] });
    expect((await callback(await startSignIn(`org=${l.tenant.slug}`))).body.role).toBe('owner');
  });

  it('never makes a platform admin, whatever email a verified domain asserts', async () => {
    const l = await linkedTenant('shared');
    const platformDomain = PLATFORM_ADMIN.split('@')[1];
    await control('INSERT INTO control.sso_domains (domain, tenant_id, verified) VALUES ($1, $2, true)', [platformDomain, l.tenant.id]);
    try {
      await standIn.queueProfiles(l.org, { email: PLATFORM_ADMIN });
      const res = await callback(await startSignIn(`org=${l.tenant.slug}`));
      expect(res.status).toBe(200);
      expect(res.body.user.platformAdmin).toBe(false);
      const viaSso = t.http.as(res.body.accessToken);
      const tenants = await viaSso.get('/tenants');
      expect(tenants.status).toBe(403);
      expect(tenants.body.code).toBe('PLATFORM_ADMIN_REQUIRED');
      // The same person through the development login is an admin: the difference is the IdP.
      expect((await (await t.admin()).get('/tenants')).status).toBe(200);
    } finally {
      await control('DELETE FROM control.sso_domains WHERE domain = $1', [platformDomain]);
    }
  });

  it('once SSO is enforced, people on its verified domains cannot use the development login', async () => {
    const l = await linkedTenant('shared');
    const email = `dev@${l.domain}`;
    expect((await t.http.post('/auth/dev/login', { email })).status).toBe(200);
    expect((await l.tenant.owner.patch(`/orgs/${l.tenant.slug}/sso`, { enforceSso: true })).status).toBe(200);
    const refused = await t.http.post('/auth/dev/login', { email });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('SSO_REQUIRED');
    await standIn.queueProfiles(l.org, { email });
    expect((await callback(await startSignIn(`email=${encodeURIComponent(email)}`))).status).toBe(200);
  });
});

describe('linking and the Admin Portal', () => {
  it('links, refuses a second link, gives portal links, and checks input and roles', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    const owner = tenant.owner;
    expect((await owner.get(`/orgs/${tenant.slug}/sso`)).body).toMatchObject({ linked: false, domains: [] });
    expect((await owner.post(`/orgs/${tenant.slug}/sso/portal-link`, { intent: 'sso' })).body.code).toBe('SSO_NOT_LINKED');
    for (const [body, field] of [
      [{}, 'domains'],
      [{ domains: ['not a domain'] }, 'domains'],
      [{ workosOrganizationId: 'nope' }, 'workosOrganizationId'],
      [{ domains: ['a.example.com'], workosOrganizationId: 'org_123' }, 'domains'],
    ] as const) {
      const res = await owner.post(`/orgs/${tenant.slug}/sso`, body);
      expect(res.status).toBe(400);
      expect(res.body.field).toBe(field);
    }
    const missing = await owner.post(`/orgs/${tenant.slug}/sso`, { workosOrganizationId: 'org_doesnotexist' });
    expect(missing.status).toBe(400);
    expect(missing.body.field).toBe('workosOrganizationId');

    const domain = `${uniqueSlug('portal')}.example.com`;
    expect((await owner.post(`/orgs/${tenant.slug}/sso`, { domains: [domain] })).status).toBe(201);
    const twice = await owner.post(`/orgs/${tenant.slug}/sso`, { domains: [`other-${domain}`] });
    expect(twice.status).toBe(409);
    expect(twice.body.code).toBe('SSO_ALREADY_LINKED');
    for (const intent of ['sso', 'dsync']) {
      const link = await owner.post(`/orgs/${tenant.slug}/sso/portal-link`, { intent });
      expect(link.status).toBe(200);
      expect(link.body.link).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/portal\//);
    }
    expect((await owner.post(`/orgs/${tenant.slug}/sso/portal-link`, { intent: 'billing' })).body.field).toBe('intent');
    expect((await owner.patch(`/orgs/${tenant.slug}/sso`, { roleMapping: { x: 'superuser' } })).body.field).toBe('roleMapping');
    expect((await owner.patch(`/orgs/${tenant.slug}/sso`, { defaultRole: 'owner' })).body.field).toBe('defaultRole');

    const member = await t.login(`member@${uniqueSlug('m')}.test`);
    const memberEmail = (await member.get('/me')).body.email;
    await owner.post(`/orgs/${tenant.slug}/members`, { email: memberEmail, role: 'member' });
    expect((await member.get(`/orgs/${tenant.slug}/sso`)).status).toBe(403);
    const stranger = await t.login(`stranger@${uniqueSlug('s')}.test`);
    expect((await stranger.get(`/orgs/${tenant.slug}/sso`)).status).toBe(404);
  });

  it('answers 503 SSO_NOT_CONFIGURED where WorkOS is not configured', async () => {
    const bare = await startTestApp({ env: { JWT_SECRET: jwtSecret } });
    try {
      const res = await new HttpClient(bare.http.baseUrl).get('/auth/sso/authorize?email=a%40b.test');
      expect(res.status).toBe(503);
      expect(res.body.code).toBe('SSO_NOT_CONFIGURED');
    } finally {
      await bare.close();
    }
  });
});
