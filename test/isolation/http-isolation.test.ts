import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { HttpClient, TestResponse } from '../../libs/testing/index.js';
import { TIERS, type Tier } from '../../src/tenancy/tenant-route.js';
import { createTenant, moveTenant, seedProjects, SeededProject, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * A member of tenant A attacks tenant B through every endpoint, for every pair of tiers:
 * B's slug, B's ids under A's slug, B's organization_id in bodies, mismatched X-Tenant headers,
 * malformed and injected slugs and ids. Every attempt must fail (400/403/404) and B's data must
 * be exactly as it was. Every pair runs twice: on tenants provisioned on their tiers, and on
 * tenants moved there from another tier with their data (a moved tenant is as isolated).
 */
let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

interface Snapshot {
  projects: unknown[];
  tasks: Record<string, unknown[]>;
  members: unknown[];
}

async function snapshot(tenant: TenantFixture, projects: SeededProject[]): Promise<Snapshot> {
  const list = await tenant.owner.get(`/orgs/${tenant.slug}/projects?limit=100`);
  const tasks: Record<string, unknown[]> = {};
  for (const p of projects) tasks[p.id] = (await tenant.owner.get(`/orgs/${tenant.slug}/projects/${p.id}/tasks?limit=100`)).body.items;
  const members = (await tenant.owner.get(`/orgs/${tenant.slug}/members`)).body.items;
  return { projects: list.body.items, tasks, members };
}

function expectRefused(res: TestResponse, allowed: number[] = [400, 403, 404]): void {
  expect(allowed).toContain(res.status);
  expect(res.body).toMatchObject({ status: res.status, code: expect.any(String), requestId: expect.any(String) });
}

/** Each pair twice: tenants provisioned on their tier, and tenants moved there (with their data) from another tier. */
const pairs: Array<[Tier, Tier, 'provisioned' | 'moved']> = (['provisioned', 'moved'] as const).flatMap((how) =>
  TIERS.flatMap((a) => TIERS.map((b) => [a, b, how] as [Tier, Tier, 'provisioned' | 'moved'])),
);

/** Where a tenant starts when it is to be moved to `tier`: the next tier round. */
const startOf = (tier: Tier): Tier => TIERS[(TIERS.indexOf(tier) + 1) % TIERS.length];

describe.each(pairs)('a member of a %s tenant attacking a %s tenant (%s)', (tierA, tierB, how) => {
  let a: TenantFixture;
  let b: TenantFixture;
  let aProjects: SeededProject[];
  let bProjects: SeededProject[];
  let before: Snapshot;
  let bOwnerId: string;

  beforeAll(async () => {
    a = await createTenant(t, { tier: how === 'moved' ? startOf(tierA) : tierA });
    b = await createTenant(t, { tier: how === 'moved' ? startOf(tierB) : tierB });
    aProjects = await seedProjects(a, 2, 1);
    bProjects = await seedProjects(b, 2, 2);
    if (how === 'moved') {
      await moveTenant(t, a, tierA);
      await moveTenant(t, b, tierB);
    }
    before = await snapshot(b, bProjects);
    bOwnerId = (await b.owner.get('/me')).body.id;
  });

  it("cannot read, list, change or delete B's data through B's slug", async () => {
    const bp = bProjects[0];
    const attempts = [
      a.owner.get(`/orgs/${b.slug}/projects`),
      a.owner.get(`/orgs/${b.slug}/projects/${bp.id}`),
      a.owner.patch(`/orgs/${b.slug}/projects/${bp.id}`, { name: 'pwned' }),
      a.owner.delete(`/orgs/${b.slug}/projects/${bp.id}`),
      a.owner.post(`/orgs/${b.slug}/projects`, { name: 'planted' }),
      a.owner.get(`/orgs/${b.slug}/projects/${bp.id}/tasks`),
      a.owner.post(`/orgs/${b.slug}/projects/${bp.id}/tasks`, { title: 'planted' }),
      a.owner.get(`/orgs/${b.slug}/projects/${bp.id}/tasks/${bp.taskIds[0]}`),
      a.owner.patch(`/orgs/${b.slug}/projects/${bp.id}/tasks/${bp.taskIds[0]}`, { status: 'done' }),
      a.owner.delete(`/orgs/${b.slug}/projects/${bp.id}/tasks/${bp.taskIds[0]}`),
      a.owner.get(`/orgs/${b.slug}/members`),
      a.owner.post(`/orgs/${b.slug}/members`, { email: 'spy@evil.test', role: 'owner' }),
      a.owner.patch(`/orgs/${b.slug}/members/${bOwnerId}`, { role: 'viewer' }),
      a.owner.delete(`/orgs/${b.slug}/members/${bOwnerId}`),
    ];
    for (const res of await Promise.all(attempts)) {
      expect(res.status).toBe(404);
      expect(res.body.code).toBe('TENANT_NOT_FOUND');
    }
  });

  it("cannot reach B's rows by putting B's ids under A's own slug", async () => {
    const bp = bProjects[0];
    const ap = aProjects[0];
    const notFound = [
      a.owner.get(`/orgs/${a.slug}/projects/${bp.id}`),
      a.owner.patch(`/orgs/${a.slug}/projects/${bp.id}`, { name: 'pwned' }),
      a.owner.delete(`/orgs/${a.slug}/projects/${bp.id}`),
      a.owner.get(`/orgs/${a.slug}/projects/${bp.id}/tasks`),
      a.owner.post(`/orgs/${a.slug}/projects/${bp.id}/tasks`, { title: 'planted in B' }),
      a.owner.get(`/orgs/${a.slug}/projects/${bp.id}/tasks/${bp.taskIds[0]}`),
      a.owner.get(`/orgs/${a.slug}/projects/${ap.id}/tasks/${bp.taskIds[0]}`),
      a.owner.patch(`/orgs/${a.slug}/projects/${ap.id}/tasks/${bp.taskIds[0]}`, { title: 'pwned' }),
      a.owner.delete(`/orgs/${a.slug}/projects/${ap.id}/tasks/${bp.taskIds[0]}`),
      a.owner.patch(`/orgs/${a.slug}/members/${bOwnerId}`, { role: 'viewer' }),
      a.owner.delete(`/orgs/${a.slug}/members/${bOwnerId}`),
    ];
    for (const res of await Promise.all(notFound)) {
      expect(res.status).toBe(404);
      expect(['PROJECT_NOT_FOUND', 'TASK_NOT_FOUND', 'MEMBER_NOT_FOUND']).toContain(res.body.code);
    }
  });

  it("cannot smuggle B's organization_id in a body", async () => {
    const ap = aProjects[0];
    const smuggled = [
      a.owner.post(`/orgs/${a.slug}/projects`, { name: 'x', organization_id: b.id }),
      a.owner.post(`/orgs/${a.slug}/projects`, { name: 'x', organizationId: b.id }),
      a.owner.post(`/orgs/${a.slug}/projects`, { name: 'x', id: bProjects[0].id }),
      a.owner.patch(`/orgs/${a.slug}/projects/${ap.id}`, { organizationId: b.id }),
      a.owner.post(`/orgs/${a.slug}/projects/${ap.id}/tasks`, { title: 'x', organization_id: b.id }),
      a.owner.post(`/orgs/${a.slug}/projects/${ap.id}/tasks`, { title: 'x', projectId: bProjects[0].id }),
      a.owner.patch(`/orgs/${a.slug}/projects/${ap.id}/tasks/${ap.taskIds[0]}`, { projectId: bProjects[0].id }),
      a.owner.post(`/orgs/${a.slug}/members`, { email: 'x@y.test', role: 'member', tenantId: b.id }),
    ];
    for (const res of await Promise.all(smuggled)) {
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect(res.body.field).toEqual(expect.any(String));
    }
  });

  it('cannot switch tenant with a mismatched X-Tenant header', async () => {
    const spoof = a.owner.withHeaders({ 'x-tenant': b.slug });
    for (const res of await Promise.all([
      spoof.get(`/orgs/${a.slug}/projects`),
      spoof.get(`/orgs/${a.slug}/projects/${bProjects[0].id}`),
      spoof.post(`/orgs/${a.slug}/projects`, { name: 'x' }),
    ])) {
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('TENANT_MISMATCH');
    }
    // The header alone (no slug in the path) names B: A is not a member, so B does not exist for A.
    for (const res of await Promise.all([
      spoof.get('/projects'),
      spoof.get(`/projects/${bProjects[0].id}`),
      spoof.delete(`/projects/${bProjects[0].id}`),
      spoof.post('/members', { email: 'spy@evil.test', role: 'owner' }),
    ])) {
      expect(res.status).toBe(404);
      expect(res.body.code).toBe('TENANT_NOT_FOUND');
    }
  });

  it('gets only its own rows whatever cursor it sends', async () => {
    const res = await a.owner.get(`/orgs/${a.slug}/projects?cursor=ffffffff-ffff-7fff-bfff-ffffffffffff&limit=100`);
    expect(res.status).toBe(200);
    expect(res.body.items.map((p: { id: string }) => p.id).sort()).toEqual(aProjects.map((p) => p.id).sort());
    const withB = await a.owner.get(`/orgs/${a.slug}/projects?cursor=${bProjects[1].id}&limit=100`);
    for (const p of withB.body.items) expect(aProjects.map((x) => x.id)).toContain(p.id);
  });

  it("left B's rows exactly as they were", async () => {
    expect(await snapshot(b, bProjects)).toEqual(before);
  });
});

describe('probing with malformed and injected slugs and ids', () => {
  let a: TenantFixture;
  let b: TenantFixture;
  let bProject: SeededProject;
  let outsider: HttpClient;

  beforeAll(async () => {
    a = await createTenant(t, { tier: 'shared' });
    b = await createTenant(t, { tier: 'shared' });
    [bProject] = await seedProjects(b, 1, 1);
    outsider = await t.login('outsider@nowhere.test');
  });

  it('answers a tenant that exists but is not yours exactly like one that does not exist', async () => {
    const existing = await outsider.get(`/orgs/${b.slug}/projects`);
    const missing = await outsider.get(`/orgs/no-such-tenant-x/projects`);
    expect(existing.status).toBe(404);
    expect(missing.status).toBe(404);
    const strip = (r: TestResponse) => ({ ...r.body, requestId: undefined, message: r.body.message.replace(/'[^']+'/, "'?'") });
    expect(strip(existing)).toEqual(strip(missing));
  });

  it('platform admins are outsiders to tenant data too', async () => {
    const admin = await t.admin();
    expect((await admin.get(`/orgs/${b.slug}/projects`)).status).toBe(404);
  });

  it.each([
    `${'B'}`,
    "acme'--",
    "x' OR '1'='1",
    '%27%3B%20DROP%20TABLE%20projects%3B--',
    'a',
    'a'.repeat(64),
    '-leading',
    'trailing-',
    'UPPER',
    'sp%20ace',
    'uni%C3%A7ode',
    '..%2F..%2Fetc',
    'null%00byte',
  ])('refuses the slug %s without a 500', async (slug) => {
    const res = await a.owner.get(`/orgs/${slug}/projects`);
    expectRefused(res);
  });

  it.each([
    'not-a-uuid',
    "1' OR '1'='1",
    '%27%20OR%201%3D1--',
    '00000000-0000-0000-0000-00000000000g',
    'ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZZZZZZZZZ',
  ])('refuses the id %s with 400 naming the parameter', async (id) => {
    for (const res of await Promise.all([
      a.owner.get(`/orgs/${a.slug}/projects/${id}`),
      a.owner.delete(`/orgs/${a.slug}/projects/${id}`),
      a.owner.get(`/orgs/${a.slug}/projects/${id}/tasks`),
      a.owner.get(`/orgs/${a.slug}/projects?cursor=${id}`),
    ])) {
      expect(res.status).toBe(400);
      expect(['projectId', 'cursor']).toContain(res.body.field);
    }
  });

  it("cannot reach B's project with its id in upper case either", async () => {
    const res = await a.owner.get(`/orgs/${a.slug}/projects/${bProject.id.toUpperCase()}`);
    expectRefused(res, [400, 404]);
    expect((await b.owner.get(`/orgs/${b.slug}/projects/${bProject.id}`)).status).toBe(200);
  });

  it('refuses requests with no token, a forged token or a token for another secret', async () => {
    const anonymous = await t.http.get(`/orgs/${a.slug}/projects`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.code).toBe('UNAUTHENTICATED');
    const forged = await t.http.as('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.').get(`/orgs/${a.slug}/projects`);
    expect(forged.status).toBe(401);
    const token = (await t.http.post('/auth/dev/login', { email: a.ownerEmail })).body.accessToken as string;
    const [h, p] = token.split('.');
    const tampered = await t.http.as(`${h}.${p}.${'A'.repeat(43)}`).get(`/orgs/${a.slug}/projects`);
    expect(tampered.status).toBe(401);
  });
});
