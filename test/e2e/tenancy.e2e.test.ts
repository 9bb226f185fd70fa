import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createTenant, seedProjects, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';
import { withSuperuser } from '../../libs/testing/index.js';
import { TIERS } from '../../src/tenancy/tenant-route.js';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

describe.each(TIERS)('the quick start on the %s tier', (tier) => {
  let tenant: TenantFixture;
  beforeAll(async () => {
    tenant = await createTenant(t, { tier });
  });

  it('reports the placement it was given', async () => {
    const res = await (await t.admin()).get(`/tenants/${tenant.id}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ slug: tenant.slug, status: 'active', placement: { tier } });
    expect(JSON.stringify(res.body)).not.toMatch(/password|t_[0-9a-f]{32}/);
  });

  it('creates, lists with keyset pagination, gets, updates and deletes projects', async () => {
    const base = `/orgs/${tenant.slug}/projects`;
    const created = await seedProjects(tenant, 5, 0);
    const page1 = await tenant.owner.get(`${base}?limit=2`);
    expect(page1.status).toBe(200);
    expect(page1.body.items.map((p: { id: string }) => p.id)).toEqual([created[4].id, created[3].id]);
    const page2 = await tenant.owner.get(`${base}?limit=2&cursor=${page1.body.nextCursor}`);
    expect(page2.body.items.map((p: { id: string }) => p.id)).toEqual([created[2].id, created[1].id]);
    const page3 = await tenant.owner.get(`${base}?limit=2&cursor=${page2.body.nextCursor}`);
    expect(page3.body.items.map((p: { id: string }) => p.id)).toEqual([created[0].id]);
    expect(page3.body.nextCursor).toBeNull();

    const one = await tenant.owner.get(`${base}/${created[0].id}`);
    expect(one.status).toBe(200);
    expect(one.body.name).toBe(created[0].name);

    const updated = await tenant.owner.patch(`${base}/${created[0].id}`, { description: 'now described' });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ name: created[0].name, description: 'now described' });
    expect(Date.parse(updated.body.updatedAt)).toBeGreaterThan(Date.parse(updated.body.createdAt));

    expect((await tenant.owner.delete(`${base}/${created[0].id}`)).status).toBe(204);
    expect((await tenant.owner.get(`${base}/${created[0].id}`)).status).toBe(404);
    expect((await tenant.owner.delete(`${base}/${created[0].id}`)).status).toBe(404);
  });

  it('manages tasks under a project, and deleting the project deletes its tasks', async () => {
    const [project] = await seedProjects(tenant, 1, 3);
    const base = `/orgs/${tenant.slug}/projects/${project.id}/tasks`;
    const list = await tenant.owner.get(base);
    expect(list.body.items).toHaveLength(3);
    const done = await tenant.owner.patch(`${base}/${project.taskIds[1]}`, { status: 'done' });
    expect(done.status).toBe(200);
    expect(done.body.status).toBe('done');
    const filtered = await tenant.owner.get(`${base}?status=done`);
    expect(filtered.body.items.map((x: { id: string }) => x.id)).toEqual([project.taskIds[1]]);
    const paged = await tenant.owner.get(`${base}?limit=1&cursor=${project.taskIds[2]}`);
    expect(paged.body.items.map((x: { id: string }) => x.id)).toEqual([project.taskIds[1]]);
    expect((await tenant.owner.delete(`${base}/${project.taskIds[0]}`)).status).toBe(204);
    expect((await tenant.owner.get(`${base}/${project.taskIds[0]}`)).status).toBe(404);
    expect((await tenant.owner.delete(`/orgs/${tenant.slug}/projects/${project.id}`)).status).toBe(204);
    const gone = await tenant.owner.get(`${base}/${project.taskIds[1]}`);
    expect(gone.status).toBe(404);
    expect(gone.body.code).toBe('PROJECT_NOT_FOUND');
  });

  it('lets owners add members with roles; viewers read but cannot write', async () => {
    const viewerEmail = `viewer@${tenant.slug}.test`;
    const added = await tenant.owner.post(`/orgs/${tenant.slug}/members`, { email: viewerEmail, role: 'viewer' });
    expect(added.status).toBe(201);
    expect(added.body).toMatchObject({ email: viewerEmail, role: 'viewer' });
    const again = await tenant.owner.post(`/orgs/${tenant.slug}/members`, { email: viewerEmail, role: 'member' });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('MEMBER_EXISTS');

    const viewer = await t.login(viewerEmail);
    expect((await viewer.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);
    const write = await viewer.post(`/orgs/${tenant.slug}/projects`, { name: 'nope' });
    expect(write.status).toBe(403);
    expect(write.body.code).toBe('ROLE_FORBIDDEN');
    expect((await viewer.post(`/orgs/${tenant.slug}/members`, { email: 'x@y.test', role: 'owner' })).status).toBe(403);

    const promoted = await tenant.owner.patch(`/orgs/${tenant.slug}/members/${added.body.userId}`, { role: 'member' });
    expect(promoted.status).toBe(200);
    // The role change reaches the cached membership at once.
    expect((await viewer.post(`/orgs/${tenant.slug}/projects`, { name: 'now allowed' })).status).toBe(201);
  });

  it('lets only owners grant, change or remove the owner role', async () => {
    const adminEmail = `admin@${tenant.slug}.test`;
    await tenant.owner.post(`/orgs/${tenant.slug}/members`, { email: adminEmail, role: 'admin' });
    const admin = await t.login(adminEmail);
    const ownerId = (await tenant.owner.get('/me')).body.id as string;
    const other = await admin.post(`/orgs/${tenant.slug}/members`, { email: `m@${tenant.slug}.test`, role: 'member' });
    expect(other.status).toBe(201);
    for (const res of [
      await admin.patch(`/orgs/${tenant.slug}/members/${ownerId}`, { role: 'viewer' }),
      await admin.delete(`/orgs/${tenant.slug}/members/${ownerId}`),
      await admin.patch(`/orgs/${tenant.slug}/members/${other.body.userId}`, { role: 'owner' }),
      await admin.post(`/orgs/${tenant.slug}/members`, { email: `o2@${tenant.slug}.test`, role: 'owner' }),
    ]) {
      expect(res.status).toBe(403);
      expect(res.body.code).toBe('OWNER_ROLE_RESTRICTED');
    }
    expect((await admin.patch(`/orgs/${tenant.slug}/members/${other.body.userId}`, { role: 'viewer' })).status).toBe(200);
  });

  it('never lets the last owner go', async () => {
    const me = await tenant.owner.get('/me');
    const ownerId = me.body.id as string;
    const demote = await tenant.owner.patch(`/orgs/${tenant.slug}/members/${ownerId}`, { role: 'admin' });
    expect(demote.status).toBe(409);
    expect(demote.body.code).toBe('LAST_OWNER');
    expect((await tenant.owner.delete(`/orgs/${tenant.slug}/members/${ownerId}`)).status).toBe(409);
  });
});

describe('tenants and people across tiers', () => {
  it('refuses tenant creation to anyone but platform admins', async () => {
    const someone = await t.login('someone@else.test');
    const res = await someone.post('/tenants', { slug: 'nope-tenant', name: 'x', tier: 'shared', ownerEmail: 'a@b.test' });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('PLATFORM_ADMIN_REQUIRED');
  });

  it('refuses a taken slug with 409 and keeps the first tenant', async () => {
    const a = await createTenant(t, { tier: 'shared' });
    const res = await (await t.admin()).post('/tenants', { slug: a.slug, name: 'dup', tier: 'schema', ownerEmail: 'never-created@y.test' });
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ code: 'TENANT_SLUG_TAKEN', field: 'slug' });
    // Nothing of the refused request was written, not even its owner's user row.
    const users = await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) =>
      c.query(`SELECT 1 FROM control.users WHERE email = 'never-created@y.test'`),
    );
    expect(users.rowCount).toBe(0);
  });

  it('gives one person one token for all their tenants (GET /me lists them)', async () => {
    const email = 'multi@people.test';
    const tenants = [];
    for (const tier of TIERS) tenants.push(await createTenant(t, { tier, ownerEmail: email }));
    const me = await t.login(email);
    const res = await me.get('/me');
    expect(res.body.tenants.map((x: { slug: string }) => x.slug).sort()).toEqual(tenants.map((x) => x.slug).sort());
    for (const tenant of tenants) {
      expect((await me.post(`/orgs/${tenant.slug}/projects`, { name: `in ${tenant.tier}` })).status).toBe(201);
      const list = await me.get(`/orgs/${tenant.slug}/projects`);
      expect(list.body.items.map((p: { name: string }) => p.name)).toEqual([`in ${tenant.tier}`]);
    }
  });

  it('accepts the tenant in an X-Tenant header that matches the path, and refuses one that does not', async () => {
    const a = await createTenant(t, { tier: 'shared' });
    const b = await createTenant(t, { tier: 'schema', ownerEmail: a.ownerEmail });
    expect((await a.owner.withHeaders({ 'x-tenant': a.slug }).get(`/orgs/${a.slug}/projects`)).status).toBe(200);
    const res = await a.owner.withHeaders({ 'x-tenant': b.slug }).get(`/orgs/${a.slug}/projects`);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'TENANT_MISMATCH', field: 'X-Tenant' });
  });

  it('serves tenant routes by the X-Tenant header alone, with the same checks as the path', async () => {
    const a = await createTenant(t, { tier: 'schema' });
    const b = await createTenant(t, { tier: 'shared' });
    const [project] = await seedProjects(a, 1, 1);
    const viaHeader = a.owner.withHeaders({ 'x-tenant': a.slug });
    const list = await viaHeader.get('/projects?limit=5');
    expect(list.status).toBe(200);
    expect(list.body.items.map((p: { id: string }) => p.id)).toEqual([project.id]);
    expect((await viaHeader.get(`/projects/${project.id}/tasks`)).body.items.map((x: { id: string }) => x.id)).toEqual(project.taskIds);
    expect((await viaHeader.post('/projects', { name: 'by header' })).status).toBe(201);
    expect((await viaHeader.get('/members')).body.items).toHaveLength(1);
    const foreign = await a.owner.withHeaders({ 'x-tenant': b.slug }).get('/projects');
    expect(foreign.status).toBe(404);
    expect(foreign.body.code).toBe('TENANT_NOT_FOUND');
    const injected = await a.owner.withHeaders({ 'x-tenant': "x' OR '1'='1" }).get('/projects');
    expect(injected.status).toBe(400);
    expect(injected.body.field).toBe('slug');
    expect((await a.owner.get('/projects')).status).toBe(404);
    // Routes that are not tenant-scoped ignore the header.
    expect((await viaHeader.get('/me')).status).toBe(200);
  });

  it('serves the OpenAPI document and health', async () => {
    const doc = await t.http.get('/docs-json');
    expect(doc.status).toBe(200);
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining(['/tenants', '/orgs/{slug}/projects', '/orgs/{slug}/projects/{projectId}/tasks/{taskId}', '/orgs/{slug}/members', '/health']),
    );
    expect(doc.body.components.securitySchemes.bearer).toBeDefined();
    expect(doc.body.components.schemas.ErrorBodyDto.required).toEqual(expect.arrayContaining(['status', 'code', 'message', 'requestId']));
    const ui = await t.http.get('/docs');
    expect(ui.status).toBe(200);
    expect(String(ui.body)).toMatch(/swagger/i);
    const health = await t.http.get('/health');
    expect(health.status).toBe(200);
    expect(Object.keys(health.body.details)).toEqual(expect.arrayContaining(['db:primary', 'db:secondary']));
    expect((await t.http.get('/health/live')).body).toEqual({ status: 'ok' });
  });
});
