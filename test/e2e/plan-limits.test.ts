import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { quoteIdent } from '../../libs/postgres/index.js';
import { HttpClient, withSuperuser } from '../../libs/testing/index.js';
import { startWorkOSStandIn, type WorkOSStandIn } from '../../libs/testing/workos-stand-in.js';
import { Entitlements } from '../../src/billing/entitlements.service.js';
import { TIERS, type Tier } from '../../src/tenancy/tenant-route.js';
import { createTenant, moveTenant, seedProjects, TenantFixture, uniqueSlug } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Plan limits on what a tenant creates, on real PostgreSQL and every tier: projects per tenant,
 * tasks per project and seats hold under fifty concurrent creators; a refusal is a 403 that names
 * the feature, the limit and the usage; a downgrade below the usage blocks only creation; SSO
 * and directory sync refuse newcomers over the seats cleanly; support staff use no seat; a move
 * to a tier the plan does not include is refused before it starts.
 */
const SUPPORT = 'support@platform.test';
const CONCURRENT = 50;
const LIMIT = 10;

let standIn: WorkOSStandIn;
let t: TestApp;
let admin: HttpClient;

beforeAll(async () => {
  standIn = await startWorkOSStandIn({ apiKey: `sk_test_${randomBytes(8).toString('hex')}`, clientId: 'client_plan_limits', webhookSecret: 'whsec_plan_limits' });
  t = await startTestApp({
    env: {
      ...standIn.env,
      WORKOS_REDIRECT_URI: 'http://127.0.0.1:9/auth/sso/callback',
      // Directory events are processed because the webhook woke the processor, not by the poll.
      WORKOS_EVENTS_POLL_MS: '60000',
      SUPPORT_STAFF_EMAILS: SUPPORT,
      LIFECYCLE_SWEEP_INTERVAL_MS: '0',
    },
  });
  await standIn.setWebhook(`${t.http.baseUrl}/webhooks/workos`);
  admin = await t.admin();
  // A plan for the concurrency tests: every tier, no per-request limits (fifty requests at once
  // must reach the creation, not a rate limit or the concurrency cap), ten of each counted thing.
  await control(`INSERT INTO control.plans (key, name, rank) VALUES ('metered', 'Metered', 15)`);
  await control(
    `INSERT INTO control.plan_features (plan_key, feature, kind, limit_value, enabled) VALUES
       ('metered', 'seats', 'limit', $1, NULL), ('metered', 'projects', 'limit', $1, NULL), ('metered', 'tasks_per_project', 'limit', $1, NULL),
       ('metered', 'api_requests_per_minute', 'limit', NULL, NULL), ('metered', 'statement_timeout_ms', 'limit', NULL, NULL),
       ('metered', 'concurrent_requests', 'limit', NULL, NULL),
       ('metered', 'tier_shared', 'flag', NULL, true), ('metered', 'tier_schema', 'flag', NULL, true), ('metered', 'tier_dedicated', 'flag', NULL, true)`,
    [LIMIT],
  );
});
afterAll(async () => {
  await t?.close();
  await standIn?.stop();
});

/** SQL on the control plane as the superuser. */
async function control<T = Record<string, any>>(sql: string, params: unknown[] = []): Promise<T[]> {
  return withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c) => (await c.query(sql, params)).rows as T[]);
}

/** Rows of a tenant table in the tenant's placement, counted by the superuser (no RLS, no app). */
async function rowsIn(tenantId: string, table: 'projects' | 'tasks'): Promise<number> {
  const [p] = await control('SELECT server_key, database_name, schema_name FROM control.tenants WHERE id = $1', [tenantId]);
  const port = p.server_key === 'primary' ? t.harness.primaryPort : t.harness.secondaryPort;
  return withSuperuser(t.harness, port, p.database_name, async (c) => {
    const { rows } = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quoteIdent(p.schema_name)}.${table} WHERE organization_id = $1`, [tenantId]);
    return rows[0].n;
  });
}

async function seatsOf(tenantId: string): Promise<number> {
  return (await control<{ n: number }>('SELECT count(*)::int AS n FROM control.memberships WHERE tenant_id = $1', [tenantId]))[0].n;
}

/** Puts a tenant on another plan with plain SQL, and waits until the app has heard of it (NOTIFY). */
async function changePlan(tenantId: string, plan: string): Promise<void> {
  await control('UPDATE control.organization_billing SET plan_key = $2 WHERE tenant_id = $1', [tenantId, plan]);
  const entitlements = t.app.get(Entitlements);
  const until = Date.now() + 5_000;
  while ((await entitlements.of(tenantId)).plan.key !== plan) {
    if (Date.now() > until) throw new Error(`the app did not see tenant ${tenantId} move to the ${plan} plan`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Statuses of many responses, counted: { 201: 10, 403: 40 }. */
function tally(responses: Array<{ status: number }>): Record<number, number> {
  const out: Record<number, number> = {};
  for (const r of responses) out[r.status] = (out[r.status] ?? 0) + 1;
  return out;
}

const refusal = (feature: string, limit: number, usage: number, message: string) => ({
  status: 403,
  code: 'PLAN_LIMIT_REACHED',
  message,
  feature,
  limit,
  usage,
  requestId: expect.any(String),
});

describe.each(TIERS)('plan limits on the %s tier', (tier: Tier) => {
  it(`${CONCURRENT} concurrent project creates against a limit of ${LIMIT}: exactly ${LIMIT} created, the rest refused with feature, limit and usage`, async () => {
    const tenant = await createTenant(t, { tier, plan: 'metered' });
    const orgs = `/orgs/${tenant.slug}`;
    const answers = await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => tenant.owner.post(`${orgs}/projects`, { name: `p${i}` })));
    expect(tally(answers)).toEqual({ 201: LIMIT, 403: CONCURRENT - LIMIT });
    expect(await rowsIn(tenant.id, 'projects')).toBe(LIMIT);
    for (const a of answers.filter((a) => a.status === 403)) {
      expect(a.body).toEqual(refusal('projects', LIMIT, LIMIT, `the metered plan allows ${LIMIT} projects; this tenant has ${LIMIT}. Upgrade the plan or delete one.`));
    }
    // The refused creations left nothing behind, not even an audit entry.
    const created = (await tenant.owner.get(`${orgs}/audit?action=project.created&limit=100`)).body.items;
    expect(created).toHaveLength(LIMIT);
  });

  it(`${CONCURRENT} concurrent task creates in one project against a limit of ${LIMIT} per project: exactly ${LIMIT}; other projects are counted apart`, async () => {
    const tenant = await createTenant(t, { tier, plan: 'metered' });
    const orgs = `/orgs/${tenant.slug}`;
    const [a, b] = await seedProjects(tenant, 2, 0);
    const answers = await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => tenant.owner.post(`${orgs}/projects/${a.id}/tasks`, { title: `t${i}` })));
    expect(tally(answers)).toEqual({ 201: LIMIT, 403: CONCURRENT - LIMIT });
    expect(await rowsIn(tenant.id, 'tasks')).toBe(LIMIT);
    expect(answers.find((x) => x.status === 403)!.body).toEqual(
      refusal('tasks_per_project', LIMIT, LIMIT, `the metered plan allows ${LIMIT} tasks per project; this project has ${LIMIT}. Upgrade the plan or delete one.`),
    );
    // The other project has its own ten, also under concurrency.
    const other = await Promise.all(Array.from({ length: 15 }, (_, i) => tenant.owner.post(`${orgs}/projects/${b.id}/tasks`, { title: `u${i}` })));
    expect(tally(other)).toEqual({ 201: LIMIT, 403: 5 });
    expect(await rowsIn(tenant.id, 'tasks')).toBe(2 * LIMIT);
  });

  it(`${CONCURRENT} concurrent member adds against ${LIMIT} seats (the owner holds one): exactly ${LIMIT} memberships`, async () => {
    const tenant = await createTenant(t, { tier, plan: 'metered' });
    const orgs = `/orgs/${tenant.slug}`;
    const answers = await Promise.all(
      Array.from({ length: CONCURRENT }, (_, i) => tenant.owner.post(`${orgs}/members`, { email: `m${i}@${tenant.slug}.test`, role: 'member' })),
    );
    expect(tally(answers)).toEqual({ 201: LIMIT - 1, 403: CONCURRENT - LIMIT + 1 });
    expect(await seatsOf(tenant.id)).toBe(LIMIT);
    expect(answers.find((x) => x.status === 403)!.body).toEqual(
      refusal('seats', LIMIT, LIMIT, `the metered plan allows ${LIMIT} seats; this tenant has ${LIMIT}. Upgrade the plan or remove a member.`),
    );
    // A refused add left no audit entry; the added ones each have theirs.
    const added = (await tenant.owner.get(`${orgs}/audit?action=member.added&limit=100`)).body.items;
    expect(added).toHaveLength(LIMIT - 1);
  });

  it('a downgrade below the usage blocks only creation: reads, updates and deletes work; creating resumes once below the limit', async () => {
    const tenant = await createTenant(t, { tier });
    const orgs = `/orgs/${tenant.slug}`;
    const projects = await seedProjects(tenant, 5, 1);
    await changePlan(tenant.id, 'free');

    const list = await tenant.owner.get(`${orgs}/projects?limit=100`);
    expect(list.status).toBe(200);
    expect(list.body.items).toHaveLength(5);
    expect((await tenant.owner.patch(`${orgs}/projects/${projects[0].id}`, { name: 'renamed after the downgrade' })).status).toBe(200);
    expect((await tenant.owner.get(`${orgs}/projects/${projects[0].id}`)).body.name).toBe('renamed after the downgrade');
    // Tasks of existing projects are under the free plan's 100 per project: they may still be added.
    expect((await tenant.owner.post(`${orgs}/projects/${projects[0].id}/tasks`, { title: 'still fine' })).status).toBe(201);

    const refused = await tenant.owner.post(`${orgs}/projects`, { name: 'one too many' });
    expect(refused.body).toEqual(refusal('projects', 3, 5, 'the free plan allows 3 projects; this tenant has 5. Upgrade the plan or delete one.'));
    for (const [i, usage] of [[1, 4], [2, 3]] as const) {
      expect((await tenant.owner.delete(`${orgs}/projects/${projects[i].id}`)).status).toBe(204);
      expect((await tenant.owner.post(`${orgs}/projects`, { name: 'still too many' })).body).toMatchObject({ code: 'PLAN_LIMIT_REACHED', usage });
    }
    expect((await tenant.owner.delete(`${orgs}/projects/${projects[3].id}`)).status).toBe(204);
    expect((await tenant.owner.post(`${orgs}/projects`, { name: 'below the limit again' })).status).toBe(201);
    expect((await tenant.owner.post(`${orgs}/projects`, { name: 'at the limit' })).body).toMatchObject({ code: 'PLAN_LIMIT_REACHED', limit: 3, usage: 3 });
    expect(await rowsIn(tenant.id, 'projects')).toBe(3);

    // Back on an unlimited plan, creating works at once.
    await changePlan(tenant.id, 'enterprise');
    expect((await tenant.owner.post(`${orgs}/projects`, { name: 'unlimited again' })).status).toBe(201);
  });
});

describe('seats', () => {
  /** A free tenant (3 seats) whose seats are all taken: the owner and two members. */
  async function fullFreeTenant(): Promise<TenantFixture & { domain: string }> {
    const slug = uniqueSlug('seats');
    const domain = `${slug}.example.com`;
    const tenant = await createTenant(t, { tier: 'shared', plan: 'free', slug, ownerEmail: `owner@${domain}` });
    for (const name of ['ann', 'ben']) {
      expect((await tenant.owner.post(`/orgs/${slug}/members`, { email: `${name}@${domain}`, role: 'member' })).status).toBe(201);
    }
    expect(await seatsOf(tenant.id)).toBe(3);
    return { ...tenant, domain };
  }

  it('a downgrade below the seats blocks only adding: role changes and removals work; adding resumes once below the limit', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    const orgs = `/orgs/${tenant.slug}`;
    for (const name of ['ann', 'ben', 'cat']) {
      expect((await tenant.owner.post(`${orgs}/members`, { email: `${name}@${tenant.slug}.test`, role: 'member' })).status).toBe(201);
    }
    await changePlan(tenant.id, 'free');
    const add = (name: string) => tenant.owner.post(`${orgs}/members`, { email: `${name}@${tenant.slug}.test`, role: 'viewer' });
    expect((await add('dan')).body).toEqual(refusal('seats', 3, 4, 'the free plan allows 3 seats; this tenant has 4. Upgrade the plan or remove a member.'));
    const members = (await tenant.owner.get(`${orgs}/members`)).body.items as Array<{ userId: string; email: string }>;
    expect(members).toHaveLength(4);
    const idOf = (name: string) => members.find((m) => m.email === `${name}@${tenant.slug}.test`)!.userId;
    expect((await tenant.owner.patch(`${orgs}/members/${idOf('ann')}`, { role: 'admin' })).status).toBe(200);
    expect((await tenant.owner.delete(`${orgs}/members/${idOf('ben')}`)).status).toBe(204);
    expect((await add('dan')).body).toMatchObject({ code: 'PLAN_LIMIT_REACHED', limit: 3, usage: 3 });
    expect((await tenant.owner.delete(`${orgs}/members/${idOf('cat')}`)).status).toBe(204);
    expect((await add('dan')).status).toBe(201);
    expect((await add('eve')).body).toMatchObject({ code: 'PLAN_LIMIT_REACHED', limit: 3, usage: 3 });
    expect(await seatsOf(tenant.id)).toBe(3);
  });

  it('support staff under a grant use no seat', async () => {
    const tenant = await fullFreeTenant();
    const orgs = `/orgs/${tenant.slug}`;
    const support = await t.login(SUPPORT);
    const grant = await support.post('/support/grants', { tenant: tenant.slug, reason: 'customer asks about seats', access: 'read', minutes: 10 });
    expect(grant.body).toMatchObject({ status: 'active' });
    expect((await support.get(`${orgs}/projects`)).status).toBe(200);
    expect(await seatsOf(tenant.id)).toBe(3);
    expect((await tenant.owner.post(`${orgs}/members`, { email: `dan@${tenant.domain}`, role: 'member' })).body).toMatchObject({ code: 'PLAN_LIMIT_REACHED', usage: 3 });
  });

  describe('through the identity provider', () => {
    /** A full free tenant linked to a WorkOS organization with its domain verified and an active connection. */
    async function linkedFullTenant(): Promise<TenantFixture & { domain: string; org: string }> {
      const tenant = await fullFreeTenant();
      const linked = await tenant.owner.post(`/orgs/${tenant.slug}/sso`, { domains: [tenant.domain] });
      expect(linked.status).toBe(201);
      const org = linked.body.workosOrganizationId as string;
      await standIn.createConnection(org);
      await standIn.verifyDomain(org, tenant.domain);
      expect((await tenant.owner.get(`/orgs/${tenant.slug}/sso`)).body.domains).toEqual([{ domain: tenant.domain, verified: true }]);
      return { ...tenant, org };
    }

    /** The first half of a sign-in: through the identity provider, which hands back a code (its next queued profile) and the state. */
    async function atIdentityProvider(slug: string): Promise<{ code: string; state: string }> {
      const res = await fetch(`${t.http.baseUrl}/auth/sso/authorize?org=${slug}`, { redirect: 'manual' });
      expect(res.status).toBe(302);
      const at = await standIn.authorize(res.headers.get('location')!);
      return { code: at.code!, state: at.state! };
    }

    /** The second half: back at the app's callback, where the user, identity and membership are written. */
    function callback(at: { code: string; state: string }): Promise<{ status: number; body: any }> {
      return t.http.get(`/auth/sso/callback?${new URLSearchParams(at).toString()}`);
    }

    async function signIn(slug: string): Promise<{ status: number; body: any }> {
      return callback(await atIdentityProvider(slug));
    }

    it('an SSO sign-in of a newcomer over the seats is a clear 403 that writes nothing; members still sign in', async () => {
      const tenant = await linkedFullTenant();
      const email = `eve@${tenant.domain}`;
      await standIn.queueProfiles(tenant.org, { email, idp_id: 'idp-eve' });
      const refused = await signIn(tenant.slug);
      expect(refused.body).toEqual(refusal('seats', 3, 3, 'the free plan allows 3 seats; this tenant has 3. Upgrade the plan or remove a member.'));
      expect(await control('SELECT 1 FROM control.users WHERE email = $1', [email])).toEqual([]);
      expect(await control('SELECT 1 FROM control.sso_identities WHERE workos_organization_id = $1', [tenant.org])).toEqual([]);
      expect(await control(`SELECT 1 FROM control.platform_audit_log WHERE tenant_id = $1 AND action = 'sso.signed_in'`, [tenant.id])).toEqual([]);
      expect(await seatsOf(tenant.id)).toBe(3);

      // A member holds a seat already: their sign-in needs none.
      await standIn.queueProfiles(tenant.org, { email: `ann@${tenant.domain}`, idp_id: 'idp-ann' });
      const ann = await signIn(tenant.slug);
      expect(ann.status).toBe(200);
      expect(ann.body).toMatchObject({ role: 'member', tenant: { slug: tenant.slug } });
      expect(await seatsOf(tenant.id)).toBe(3);
    });

    it('newcomers racing through SSO for the last seat: exactly one gets in; the others leave no user, identity or sign-in event', async () => {
      const tenant = await linkedFullTenant();
      const members = (await tenant.owner.get(`/orgs/${tenant.slug}/members`)).body.items as Array<{ userId: string; email: string }>;
      const ben = members.find((m) => m.email === `ben@${tenant.domain}`)!;
      expect((await tenant.owner.delete(`/orgs/${tenant.slug}/members/${ben.userId}`)).status).toBe(204);
      expect(await seatsOf(tenant.id)).toBe(2);

      const RACERS = 20;
      const emails = Array.from({ length: RACERS }, (_, i) => `racer${i}@${tenant.domain}`);
      await standIn.queueProfiles(tenant.org, ...emails.map((email, i) => ({ email, idp_id: `idp-racer-${i}` })));
      // Every racer gets through the identity provider first, so that the callbacks, where the seat is taken, all run at once.
      const codes: Array<{ code: string; state: string }> = [];
      for (let i = 0; i < RACERS; i++) codes.push(await atIdentityProvider(tenant.slug));
      const answers = await Promise.all(codes.map(callback));

      expect(tally(answers)).toEqual({ 200: 1, 403: RACERS - 1 });
      for (const a of answers.filter((a) => a.status === 403)) {
        expect(a.body).toEqual(refusal('seats', 3, 3, 'the free plan allows 3 seats; this tenant has 3. Upgrade the plan or remove a member.'));
      }
      expect(await seatsOf(tenant.id)).toBe(3);
      // Only the winner exists: one user, one identity, one sign-in event, and it is the member.
      const users = await control<{ id: string; email: string }>('SELECT id, email FROM control.users WHERE email = ANY ($1::text[])', [emails]);
      expect(users).toHaveLength(1);
      expect(await roleOf(tenant.id, users[0].email)).toBe('member');
      expect(await control('SELECT user_id FROM control.sso_identities WHERE workos_organization_id = $1', [tenant.org])).toEqual([{ user_id: users[0].id }]);
      expect(await control(`SELECT target_id FROM control.platform_audit_log WHERE tenant_id = $1 AND action = 'sso.signed_in'`, [tenant.id])).toEqual([
        { target_id: users[0].id },
      ]);
    });

    it('directory sync over the seats records why the person was not added, and adds them once a seat is free', async () => {
      const tenant = await linkedFullTenant();
      const email = `fay@${tenant.domain}`;
      const { user, event } = await standIn.createDirectoryUser(tenant.org, { email });
      const row = await settled(event!.id);
      expect(row).toMatchObject({ status: 'ignored', attempts: 1 });
      expect(row.last_error).toBe('identity recorded, not made a member: the free plan allows 3 seats; this tenant has 3. Upgrade the plan or remove a member.');
      expect(await roleOf(tenant.id, email)).toBeNull();
      expect(await seatsOf(tenant.id)).toBe(3);

      const members = (await tenant.owner.get(`/orgs/${tenant.slug}/members`)).body.items as Array<{ userId: string; email: string }>;
      const ben = members.find((m) => m.email === `ben@${tenant.domain}`)!;
      expect((await tenant.owner.delete(`/orgs/${tenant.slug}/members/${ben.userId}`)).status).toBe(204);
      const updated = await standIn.updateDirectoryUser(user.id, { last_name: 'Newsurname' });
      expect(await settled(updated.event!.id)).toMatchObject({ status: 'processed', last_error: null });
      expect(await roleOf(tenant.id, email)).toBe('member');
      expect(await seatsOf(tenant.id)).toBe(3);
    });
  });
});

describe('tiers', () => {
  it('a move to a tier the plan does not include is refused with 403 before anything starts; an included one runs', async () => {
    const free = await createTenant(t, { tier: 'shared', plan: 'free' });
    for (const to of ['schema', 'dedicated'] as const) {
      const res = await admin.post(`/tenants/${free.id}/move`, { tier: to });
      expect(res.status).toBe(403);
      expect(res.body).toMatchObject({
        code: 'PLAN_TIER_NOT_ALLOWED',
        message: `the free plan does not include the ${to} tier (it includes: shared); upgrade the plan first`,
      });
    }
    expect(await control('SELECT 1 FROM control.tenant_moves WHERE tenant_id = $1', [free.id])).toEqual([]);
    expect((await control('SELECT tier FROM control.tenants WHERE id = $1', [free.id]))[0].tier).toBe('shared');

    const pro = await createTenant(t, { tier: 'shared', plan: 'pro' });
    expect((await admin.post(`/tenants/${pro.id}/move`, { tier: 'dedicated' })).body).toMatchObject({ status: 403, code: 'PLAN_TIER_NOT_ALLOWED' });
    await seedProjects(pro, 2, 1);
    await moveTenant(t, pro, 'schema');
    expect((await pro.owner.get(`/orgs/${pro.slug}/projects`)).body.items).toHaveLength(2);
  });
});

describe('the OpenAPI document', () => {
  it('documents the plan refusals (403 with the error body and its feature, limit and usage) where they can happen', async () => {
    const doc = (await t.http.get('/docs-json')).body;
    const refusals: Array<[string, string]> = [
      ['/orgs/{slug}/projects', 'PLAN_LIMIT_REACHED'],
      ['/orgs/{slug}/projects/{projectId}/tasks', 'PLAN_LIMIT_REACHED'],
      ['/orgs/{slug}/members', 'PLAN_LIMIT_REACHED'],
      ['/tenants/{id}/move', 'PLAN_TIER_NOT_ALLOWED'],
    ];
    for (const [path, code] of refusals) {
      const forbidden = doc.paths[path].post.responses['403'];
      expect(forbidden.description).toContain(code);
      expect(forbidden.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/ErrorBodyDto' });
    }
    expect(Object.keys(doc.components.schemas.ErrorBodyDto.properties)).toEqual(expect.arrayContaining(['feature', 'limit', 'usage']));
  });
});

// ---------------------------------------------------------------------------------------------
// directory sync helpers

interface EventRow {
  status: string;
  attempts: number;
  last_error: string | null;
}

async function settled(id: string, withinMs = 10_000): Promise<EventRow> {
  const until = Date.now() + withinMs;
  for (;;) {
    const [row] = await control<EventRow>('SELECT status, attempts, last_error FROM control.workos_events WHERE id = $1', [id]);
    if (row && row.status !== 'pending') return row;
    if (Date.now() > until) throw new Error(`event ${id} not settled within ${withinMs} ms: ${JSON.stringify(row)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function roleOf(tenantId: string, email: string): Promise<string | null> {
  const rows = await control<{ role: string }>(
    'SELECT m.role FROM control.memberships m JOIN control.users u ON u.id = m.user_id WHERE m.tenant_id = $1 AND u.email = $2',
    [tenantId, email],
  );
  return rows[0]?.role ?? null;
}
