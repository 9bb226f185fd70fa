import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Controller, HttpCode, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { v7 as uuidv7 } from 'uuid';
import { loadConfig } from '../../config/configuration.js';
import { quoteIdent } from '../../libs/postgres/index.js';
import { HttpClient, withSuperuser } from '../../libs/testing/index.js';
import { AppModule } from '../../src/app.module.js';
import { AuthService } from '../../src/auth/auth.service.js';
import { platformEventsOf } from '../../src/lifecycle/platform-audit.js';
import { SupportAccessService } from '../../src/support/support-access.service.js';
import { prepareDatabases } from '../../src/tenancy/infrastructure.js';
import type { DatabaseRuntime } from '../../src/tenancy/placements.js';
import { TenantConnectionProvider } from '../../src/tenancy/tenant-connection.provider.js';
import { TenantDirectory } from '../../src/tenancy/tenant-directory.service.js';
import { ROLES, TIERS } from '../../src/tenancy/tenant-route.js';
import { AllowRoles, TenantScoped } from '../../src/tenancy/tenant-scoped.decorator.js';
import { createTenant, SeededProject, seedProjects, TenantFixture, uniqueSlug } from '../support/factories.js';
import { PLATFORM_ADMIN, startTestApp, TestApp } from '../support/test-app.js';

/**
 * Support access on every tier: support staff get in only through an explicit, expiring grant,
 * checked on every request; read grants run in READ ONLY transactions; approval rules; every use
 * and every refusal in the platform audit log (and uses in the tenant's own log).
 */
const SUPPORT = 'support@platform.test';
const SUPPORT2 = 'support2@platform.test';
/** Support staff and a platform admin at once: may approve others' grants, never their own. */
const DUAL = 'dual@platform.test';
const ADMIN2 = 'admin2@platform.test';
const MAX_MINUTES = 30;

let t: TestApp;
let probe: { app: NestFastifyApplication; runtime: DatabaseRuntime; url: string };

/**
 * Test-only routes that let every role POST, so that the READ ONLY transaction is what stands
 * between a read grant and a write (the real guard and the real transaction interceptor run).
 */
@TenantScoped()
@Controller('orgs/:slug/read-only-probe')
class ReadOnlyProbeController {
  constructor(private readonly tenant: TenantConnectionProvider) {}

  @Post('show')
  @HttpCode(200)
  @AllowRoles(...ROLES)
  async show(): Promise<{ transactionReadOnly: string }> {
    const rows = await this.tenant.manager.query<Array<{ transaction_read_only: string }>>('SHOW transaction_read_only');
    return { transactionReadOnly: rows[0].transaction_read_only };
  }

  @Post('write')
  @AllowRoles(...ROLES)
  async write(): Promise<{ id: string }> {
    const id = uuidv7();
    await this.tenant.manager.query(`INSERT INTO projects (id, name) VALUES ($1, 'written by the probe')`, [id]);
    return { id };
  }
}

@Module({})
class ProbeRootModule {}

/** A second app instance on the same databases, with the probe routes added to the real AppModule. */
async function startProbe(): Promise<typeof probe> {
  const runtime = await prepareDatabases(t.config);
  const app = await NestFactory.create<NestFastifyApplication>(
    { module: ProbeRootModule, imports: [AppModule.forRoot(t.config, runtime)], controllers: [ReadOnlyProbeController] },
    new FastifyAdapter(),
    { logger: false },
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.getHttpServer().address() as { port: number };
  return { app, runtime, url: `http://127.0.0.1:${port}` };
}

beforeAll(async () => {
  t = await startTestApp({
    env: {
      SUPPORT_STAFF_EMAILS: `${SUPPORT}, ${SUPPORT2},${DUAL}`,
      PLATFORM_ADMIN_EMAILS: `${PLATFORM_ADMIN},${ADMIN2},${DUAL}`,
      SUPPORT_GRANT_MAX_MINUTES: String(MAX_MINUTES),
      LIFECYCLE_SWEEP_INTERVAL_MS: '0',
    },
  });
  probe = await startProbe();
});
afterAll(async () => {
  await probe?.app.close();
  await probe?.runtime.stop();
  await t?.close();
});

const owner = <T = Record<string, any>>(sql: string, params: unknown[] = []) => t.ownerQuery<T>(sql, params);

function onProbe(client: HttpClient): HttpClient {
  return new HttpClient(probe.url, client.token);
}

async function idOf(client: HttpClient): Promise<string> {
  const me = await client.get('/me');
  expect(me.status).toBe(200);
  return me.body.id as string;
}

function events(tenantId: string, action?: string) {
  return platformEventsOf(t.pools().control(), tenantId, action);
}

/** "METHOD path status" of every use of a grant, as the platform audit log has it. */
async function platformUses(tenantId: string, grantId: string): Promise<string[]> {
  return (await events(tenantId, 'support.request'))
    .filter((e) => e.metadata.grantId === grantId)
    .map((e) => {
      expect(e.actorKind).toBe('support');
      expect(e.targetId).toBe(grantId);
      return `${e.metadata.method} ${e.metadata.path} ${e.metadata.status}`;
    });
}

/** The same, from the tenant's own audit log in its placement (read as the superuser). */
async function tenantUses(tenantId: string, grantId: string, supportId: string): Promise<string[]> {
  const rows = await tenantAudit(tenantId, 'support.request');
  return rows
    .filter((r) => r.metadata.grantId === grantId)
    .map((r) => {
      expect(r.actor_kind).toBe('support');
      expect(r.actor_id).toBe(supportId);
      return `${r.metadata.method} ${r.metadata.path} ${r.metadata.status}`;
    });
}

async function tenantAudit(tenantId: string, action: string): Promise<Array<Record<string, any>>> {
  const [placement] = await owner('SELECT server_key, database_name, schema_name FROM control.tenants WHERE id = $1', [tenantId]);
  const port = placement.server_key === 'primary' ? t.harness.primaryPort : t.harness.secondaryPort;
  return withSuperuser(t.harness, port, placement.database_name, async (c) =>
    (await c.query(`SELECT actor_kind, actor_id, action, metadata FROM ${quoteIdent(placement.schema_name)}.audit_log WHERE organization_id = $1 AND action = $2 ORDER BY created_at, id`, [tenantId, action]))
      .rows,
  );
}

async function requestGrant(client: HttpClient, body: Record<string, unknown>) {
  const res = await client.post('/support/grants', body);
  expect(res.status).toBe(201);
  return res.body as Record<string, any>;
}

const sorted = (xs: string[]) => [...xs].sort();

describe.each(TIERS)('support access on the %s tier', (tier) => {
  let tenant: TenantFixture;
  let project: SeededProject;
  let support: HttpClient;
  let supportId: string;
  let support2: HttpClient;
  let support2Id: string;
  let orgs: string;

  beforeAll(async () => {
    tenant = await createTenant(t, { tier });
    [project] = await seedProjects(tenant, 1, 1);
    support = await t.login(SUPPORT);
    supportId = await idOf(support);
    support2 = await t.login(SUPPORT2);
    support2Id = await idOf(support2);
    orgs = `/orgs/${tenant.slug}`;
  });

  it('without a grant, support staff get the same 404 as any non-member, and the refusal is logged', async () => {
    const stranger = await t.login(`stranger@${uniqueSlug('x')}.test`);
    const refused = await support.get(`${orgs}/projects?limit=5`);
    const nonMember = await stranger.get(`${orgs}/projects?limit=5`);
    expect(refused.status).toBe(404);
    expect(refused.body.code).toBe('TENANT_NOT_FOUND');
    expect({ ...refused.body, requestId: null }).toEqual({ ...nonMember.body, requestId: null });
    const logged = await events(tenant.id, 'support.access_refused');
    // Only the support user's attempt: strangers are not support staff.
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ actorKind: 'support', actorId: supportId, requestId: refused.headers.get('x-request-id') });
    expect(logged[0].metadata).toEqual({ reason: 'no_grant', grantId: null, method: 'GET', path: `${orgs}/projects` });
  });

  it('a read grant is active at once: reads work; writes are refused by the guard and by the READ ONLY transaction; every use is logged; revocation counts on the next request', async () => {
    const grant = await requestGrant(support, { tenant: tenant.slug, reason: 'customer reports a missing task', ticket: 'SUP-101', access: 'read', minutes: 15 });
    expect(grant).toMatchObject({
      tenant: { id: tenant.id, slug: tenant.slug },
      requester: { id: supportId, email: SUPPORT },
      status: 'active',
      access: 'read',
      approverKind: 'automatic',
      approvedBy: null,
      ticket: 'SUP-101',
    });
    expect(Date.parse(grant.expiresAt) - Date.parse(grant.approvedAt)).toBe(15 * 60_000);
    const expected: string[] = [];
    const use = async (client: HttpClient, method: string, path: string, body?: unknown) => {
      const res = await client.request(method, path, body);
      expected.push(`${method} ${path.split('?')[0]} ${res.status}`);
      return res;
    };

    // Reads, like a viewer.
    const list = await use(support, 'GET', `${orgs}/projects?limit=5`);
    expect(list.status).toBe(200);
    expect(list.body.items.map((p: { id: string }) => p.id)).toContain(project.id);
    expect((await use(support, 'GET', `${orgs}/projects/${project.id}/tasks`)).status).toBe(200);
    expect((await use(support, 'GET', `${orgs}/members`)).status).toBe(200);
    // The X-Tenant header form is the same route and the same checks.
    expect((await support.withHeaders({ 'x-tenant': tenant.slug }).get('/projects')).status).toBe(200);
    expected.push(`GET ${orgs}/projects 200`);

    // Writes: refused by the guard, as for a viewer.
    for (const [method, path, body] of [
      ['POST', `${orgs}/projects`, { name: 'support was here' }],
      ['PATCH', `${orgs}/projects/${project.id}`, { name: 'renamed by support' }],
      ['DELETE', `${orgs}/projects/${project.id}`, undefined],
      ['POST', `${orgs}/projects/${project.id}/tasks`, { title: 'x' }],
      ['POST', `${orgs}/members`, { email: 'friend@else.test', role: 'owner' }],
    ] as const) {
      const res = await use(support, method, path, body);
      expect(res.status).toBe(403);
      expect(res.body.code).toBe('ROLE_FORBIDDEN');
    }
    // Owner/admin reads are not a viewer's either.
    expect((await use(support, 'GET', `${orgs}/support-grants`)).status).toBe(403);

    // The database itself: on a route that lets every role write, a read grant's transaction is
    // READ ONLY and the insert is refused; the owner, on the same route, writes.
    const supportProbe = onProbe(support);
    const shown = await use(supportProbe, 'POST', `${orgs}/read-only-probe/show`);
    expect(shown.status).toBe(200);
    expect(shown.body.transactionReadOnly).toBe('on');
    const written = await use(supportProbe, 'POST', `${orgs}/read-only-probe/write`);
    expect(written.status).toBe(403);
    expect(written.body.code).toBe('READ_ONLY');
    const ownerProbe = onProbe(tenant.owner);
    expect((await ownerProbe.post(`${orgs}/read-only-probe/show`)).body.transactionReadOnly).toBe('off');
    const ownerWrite = await ownerProbe.post(`${orgs}/read-only-probe/write`);
    expect(ownerWrite.status).toBe(201);
    const projects = (await tenant.owner.get(`${orgs}/projects?limit=100`)).body.items as Array<{ id: string; name: string }>;
    expect(projects.map((p) => p.name).sort()).toEqual([project.name, 'written by the probe'].sort());
    expect(projects.map((p) => p.id)).toContain(ownerWrite.body.id);

    // Every use is in the platform audit log (outcome included, no query string) and in the tenant's own log.
    expect(sorted(await platformUses(tenant.id, grant.id))).toEqual(sorted(expected));
    expect(sorted(await tenantUses(tenant.id, grant.id, supportId))).toEqual(sorted(expected));
    const lifecycle = (await events(tenant.id)).filter((e) => e.targetId === grant.id && e.action !== 'support.request');
    expect(lifecycle.map((e) => [e.action, e.actorKind])).toEqual([
      ['support.grant_requested', 'support'],
      ['support.grant_approved', 'system'],
    ]);
    expect(lifecycle[0].metadata).toMatchObject({ access: 'read', minutes: 15, reason: 'customer reports a missing task', ticket: 'SUP-101', approverKind: 'automatic' });

    // The owner revokes: refused on the very next request, on both instances.
    const revoked = await tenant.owner.post(`${orgs}/support-grants/${grant.id}/revoke`, { reason: 'done, thanks' });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ status: 'revoked', revokedBy: { email: tenant.ownerEmail }, revokeReason: 'done, thanks' });
    expect((await support.get(`${orgs}/projects`)).status).toBe(404);
    expect((await supportProbe.post(`${orgs}/read-only-probe/show`)).status).toBe(404);
    const refusals = (await events(tenant.id, 'support.access_refused')).filter((e) => e.metadata.grantId === grant.id);
    expect(refusals.map((e) => e.metadata.reason)).toEqual(['revoked', 'revoked']);
    expect((await tenant.owner.post(`${orgs}/support-grants/${grant.id}/revoke`, {})).status).toBe(409);
  });

  it('a write grant waits for approval, then works like a member (not an admin); it stops when it expires', async () => {
    const grant = await requestGrant(support2, { tenant: tenant.slug, reason: 'repair a corrupted task', access: 'write', minutes: 10 });
    expect(grant).toMatchObject({ status: 'requested', approverKind: 'tenant', approvedAt: null, expiresAt: null });
    const pending = await support2.get(`${orgs}/projects`);
    expect(pending.status).toBe(404);
    expect((await events(tenant.id, 'support.access_refused')).at(-1)?.metadata).toMatchObject({ reason: 'requested', grantId: grant.id });

    const approved = await tenant.owner.post(`${orgs}/support-grants/${grant.id}/approve`);
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ status: 'active', approverKind: 'tenant', approvedBy: { email: tenant.ownerEmail } });
    expect(Date.parse(approved.body.expiresAt) - Date.parse(approved.body.approvedAt)).toBe(10 * 60_000);
    expect((await tenant.owner.post(`${orgs}/support-grants/${grant.id}/approve`)).body.code).toBe('SUPPORT_GRANT_STATE_CONFLICT');

    const created = await support2.post(`${orgs}/projects`, { name: 'fixed by support' });
    expect(created.status).toBe(201);
    expect((await support2.patch(`${orgs}/projects/${created.body.id}`, { description: 'see SUP-7' })).status).toBe(200);
    const shown = await onProbe(support2).post(`${orgs}/read-only-probe/show`);
    expect(shown.body.transactionReadOnly).toBe('off');
    // A member, not an admin: no member management, no grant management, no settings.
    expect((await support2.post(`${orgs}/members`, { email: 'friend@else.test', role: 'viewer' })).body.code).toBe('ROLE_FORBIDDEN');
    expect((await support2.post(`${orgs}/support-grants/${grant.id}/revoke`, {})).body.code).toBe('ROLE_FORBIDDEN');
    expect((await support2.patch(`${orgs}/support-settings`, { writeApprover: 'platform' })).body.code).toBe('ROLE_FORBIDDEN');

    // Other code sees the grant on TenantAccess: the tenant's audit log names support as the actor of the change.
    const changes = (await tenantAudit(tenant.id, 'project.created')).filter((r) => r.actor_id === support2Id);
    expect(changes.map((r) => r.actor_kind)).toEqual(['support']);
    expect(sorted(await platformUses(tenant.id, grant.id))).toEqual(
      sorted([
        `POST ${orgs}/projects 201`,
        `PATCH ${orgs}/projects/${created.body.id} 200`,
        `POST ${orgs}/read-only-probe/show 200`,
        `POST ${orgs}/members 403`,
        `POST ${orgs}/support-grants/${grant.id}/revoke 403`,
        `PATCH ${orgs}/support-settings 403`,
      ]),
    );
    expect(sorted(await tenantUses(tenant.id, grant.id, support2Id))).toEqual(sorted(await platformUses(tenant.id, grant.id)));

    // Expired (moved into the past by SQL): refused on the next request, listed as expired, not approvable again.
    await owner(`UPDATE control.support_grants SET expires_at = now() - interval '1 second' WHERE id = $1`, [grant.id]);
    const expired = await support2.get(`${orgs}/projects`);
    expect(expired.status).toBe(404);
    expect((await events(tenant.id, 'support.access_refused')).at(-1)?.metadata).toMatchObject({ reason: 'expired', grantId: grant.id });
    const listed = await tenant.owner.get(`${orgs}/support-grants`);
    expect(listed.body.items.find((g: { id: string }) => g.id === grant.id)).toMatchObject({ status: 'expired', reason: 'repair a corrupted task' });
    expect((await tenant.owner.post(`${orgs}/support-grants/${grant.id}/approve`)).status).toBe(409);
    expect((await tenant.owner.post(`${orgs}/support-grants/${grant.id}/revoke`, {})).status).toBe(409);
  });

  it('a suspended tenant is 403 under a grant too; the requester can end their own grant', async () => {
    const grant = await requestGrant(support, { tenant: tenant.slug, reason: 'follow-up', access: 'read', minutes: 5 });
    expect((await support.get(`${orgs}/projects`)).status).toBe(200);
    const admin = await t.admin();
    expect((await admin.post(`/tenants/${tenant.id}/suspend`, { reason: 'invoice unpaid' })).status).toBe(200);
    try {
      const res = await support.get(`${orgs}/projects`);
      expect(res.status).toBe(403);
      expect(res.body.code).toBe('TENANT_SUSPENDED');
    } finally {
      expect((await admin.post(`/tenants/${tenant.id}/reactivate`)).status).toBe(200);
    }
    expect((await support.get(`${orgs}/projects`)).status).toBe(200);
    // The suspended request is in the platform log as well (its tenant log was not reachable to write).
    expect(sorted(await platformUses(tenant.id, grant.id))).toEqual(sorted([`GET ${orgs}/projects 200`, `GET ${orgs}/projects 403`, `GET ${orgs}/projects 200`]));
    const ended = await support.post(`/support/grants/${grant.id}/revoke`, { reason: 'resolved' });
    expect(ended.status).toBe(200);
    expect(ended.body).toMatchObject({ status: 'revoked', revokedBy: { id: supportId } });
    expect((await support.get(`${orgs}/projects`)).status).toBe(404);
    expect((await events(tenant.id, 'support.grant_revoked')).at(-1)).toMatchObject({ actorKind: 'support', actorId: supportId, targetId: grant.id });
  });
});

describe('approval rules', () => {
  let tenant: TenantFixture;
  let support: HttpClient;
  let support2: HttpClient;
  let dual: HttpClient;
  let admin2: HttpClient;
  let tenantAdmin: HttpClient;
  let orgs: string;

  beforeAll(async () => {
    tenant = await createTenant(t, { tier: 'shared' });
    orgs = `/orgs/${tenant.slug}`;
    support = await t.login(SUPPORT);
    support2 = await t.login(SUPPORT2);
    dual = await t.login(DUAL);
    admin2 = await t.login(ADMIN2);
    const adminEmail = `admin@${tenant.slug}.test`;
    expect((await tenant.owner.post(`${orgs}/members`, { email: adminEmail, role: 'admin' })).status).toBe(201);
    tenantAdmin = await t.login(adminEmail);
  });

  it("write grants are the tenant's to approve by default: platform admins are told so; admins of the tenant approve", async () => {
    const grant = await requestGrant(support, { tenant: tenant.slug, reason: 'r', access: 'write', minutes: 5 });
    const byPlatform = await admin2.post(`/support/grants/${grant.id}/approve`);
    expect(byPlatform.status).toBe(403);
    expect(byPlatform.body.code).toBe('SUPPORT_APPROVER_MISMATCH');
    const approved = await tenantAdmin.post(`${orgs}/support-grants/${grant.id}/approve`);
    expect(approved.status).toBe(200);
    expect(approved.body.approvedBy.email).toBe(`admin@${tenant.slug}.test`);
    const again = await tenant.owner.post(`${orgs}/support-grants/${grant.id}/approve`);
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('SUPPORT_GRANT_STATE_CONFLICT');
    expect((await tenant.owner.post(`${orgs}/support-grants/${grant.id}/deny`, {})).status).toBe(409);
    const approvedEvent = (await events(tenant.id, 'support.grant_approved')).find((e) => e.targetId === grant.id);
    expect(approvedEvent).toMatchObject({ actorKind: 'user', actorId: approved.body.approvedBy.id, metadata: { approverKind: 'tenant', access: 'write' } });
    // No body at all: the reason is optional.
    expect((await support.post(`/support/grants/${grant.id}/revoke`)).status).toBe(200);
  });

  it('with writeApprover platform, only a platform admin who is not the requester approves', async () => {
    expect((await tenant.owner.patch(`${orgs}/support-settings`, { writeApprover: 'platform' })).status).toBe(200);
    try {
      const grant = await requestGrant(dual, { tenant: tenant.slug, reason: 'r', access: 'write', minutes: 5 });
      expect(grant.approverKind).toBe('platform');
      const byTenant = await tenant.owner.post(`${orgs}/support-grants/${grant.id}/approve`);
      expect(byTenant.status).toBe(403);
      expect(byTenant.body.code).toBe('SUPPORT_APPROVER_MISMATCH');
      const self = await dual.post(`/support/grants/${grant.id}/approve`);
      expect(self.status).toBe(403);
      expect(self.body.code).toBe('SUPPORT_SELF_APPROVAL');
      const notAdmin = await support.post(`/support/grants/${grant.id}/approve`);
      expect(notAdmin.status).toBe(403);
      expect(notAdmin.body.code).toBe('PLATFORM_ADMIN_REQUIRED');
      expect((await dual.get(`${orgs}/projects`)).status).toBe(404);
      const approved = await admin2.post(`/support/grants/${grant.id}/approve`);
      expect(approved.status).toBe(200);
      expect(approved.body).toMatchObject({ status: 'active', approverKind: 'platform', approvedBy: { email: ADMIN2 } });
      expect((await dual.post(`${orgs}/projects`, { name: 'by dual' })).status).toBe(201);
      expect((await admin2.post(`/support/grants/${grant.id}/approve`)).status).toBe(409);
      // Platform admins (and the requester) revoke from the platform side.
      expect((await admin2.post(`/support/grants/${grant.id}/revoke`, { reason: 'enough' })).status).toBe(200);
      expect((await dual.get(`${orgs}/projects`)).status).toBe(404);
    } finally {
      await tenant.owner.patch(`${orgs}/support-settings`, { writeApprover: 'tenant' });
    }
  });

  it('nobody approves their own grant, even as an admin of the tenant', async () => {
    const other = await createTenant(t, { tier: 'shared' });
    expect((await other.owner.post(`/orgs/${other.slug}/members`, { email: SUPPORT2, role: 'admin' })).status).toBe(201);
    const grant = await requestGrant(support2, { tenant: other.slug, reason: 'r', access: 'write', minutes: 5 });
    const self = await support2.post(`/orgs/${other.slug}/support-grants/${grant.id}/approve`);
    expect(self.status).toBe(403);
    expect(self.body.code).toBe('SUPPORT_SELF_APPROVAL');
    expect((await support2.post(`/orgs/${other.slug}/support-grants/${grant.id}/deny`, {})).body.code).toBe('SUPPORT_SELF_APPROVAL');
    // The database refuses it too, whatever the code path.
    await expect(owner(`UPDATE control.support_grants SET approved_by = requester_id WHERE id = $1`, [grant.id])).rejects.toThrow(/support_grants_not_self_approved/);
  });

  it('reads can be made to wait for approval; a denied request never admits; a request nobody decides lapses after a day', async () => {
    const settings = await tenant.owner.patch(`${orgs}/support-settings`, { readRequiresApproval: true });
    expect(settings.body).toMatchObject({ readRequiresApproval: true, writeApprover: 'tenant' });
    try {
      const read = await requestGrant(support, { tenant: tenant.slug, reason: 'look at a report', access: 'read', minutes: 5 });
      expect(read).toMatchObject({ status: 'requested', approverKind: 'tenant' });
      expect((await support.get(`${orgs}/projects`)).status).toBe(404);
      // Read approvals are always the tenant's.
      expect((await admin2.post(`/support/grants/${read.id}/approve`)).body.code).toBe('SUPPORT_APPROVER_MISMATCH');
      const denied = await tenantAdmin.post(`${orgs}/support-grants/${read.id}/deny`, { reason: 'not now' });
      expect(denied.status).toBe(200);
      expect(denied.body).toMatchObject({ status: 'denied', denyReason: 'not now', deniedBy: { email: `admin@${tenant.slug}.test` } });
      expect((await support.get(`${orgs}/projects`)).status).toBe(404);
      expect((await events(tenant.id, 'support.access_refused')).at(-1)?.metadata).toMatchObject({ reason: 'denied', grantId: read.id });
      expect((await tenantAdmin.post(`${orgs}/support-grants/${read.id}/approve`)).status).toBe(409);
      expect((await events(tenant.id, 'support.grant_denied')).find((e) => e.targetId === read.id)?.metadata).toMatchObject({ reason: 'not now' });

      const stale = await requestGrant(support, { tenant: tenant.slug, reason: 'old request', access: 'read', minutes: 5 });
      await owner(`UPDATE control.support_grants SET requested_at = now() - interval '25 hours' WHERE id = $1`, [stale.id]);
      const late = await tenant.owner.post(`${orgs}/support-grants/${stale.id}/approve`);
      expect(late.status).toBe(409);
      expect(late.body.message).toMatch(/expired/);
      expect((await support.get(`/support/grants/${stale.id}`)).body.status).toBe('expired');

      const fresh = await requestGrant(support, { tenant: tenant.slug, reason: 'look again', access: 'read', minutes: 5 });
      expect((await tenantAdmin.post(`${orgs}/support-grants/${fresh.id}/approve`)).status).toBe(200);
      expect((await support.get(`${orgs}/projects`)).status).toBe(200);
      expect((await tenantAdmin.post(`${orgs}/support-grants/${fresh.id}/revoke`, {})).status).toBe(200);
    } finally {
      await tenant.owner.patch(`${orgs}/support-settings`, { readRequiresApproval: false });
    }
  });

  it("a tenant never sees or decides another tenant's grants", async () => {
    const other = await createTenant(t, { tier: 'schema' });
    const grant = await requestGrant(support, { tenant: other.slug, reason: 'r', access: 'write', minutes: 5 });
    for (const action of ['approve', 'deny', 'revoke']) {
      const res = await tenant.owner.post(`${orgs}/support-grants/${grant.id}/${action}`, {});
      expect(res.status).toBe(404);
      expect(res.body.code).toBe('SUPPORT_GRANT_NOT_FOUND');
    }
    const mine = (await tenant.owner.get(`${orgs}/support-grants?limit=100`)).body.items as Array<{ id: string; tenant: { id: string } }>;
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((g) => g.tenant.id === tenant.id)).toBe(true);
    expect((await other.owner.get(`/orgs/${other.slug}/support-grants`)).body.items.map((g: { id: string }) => g.id)).toEqual([grant.id]);
    expect((await other.owner.post(`/orgs/${other.slug}/support-grants/${grant.id}/deny`, {})).status).toBe(200);
  });

  it('revoking from the platform side: platform admins and the requester; other support staff do not see it; others are refused', async () => {
    const grant = await requestGrant(support, { tenant: tenant.slug, reason: 'r', access: 'read', minutes: 5 });
    const otherSupport = await support2.post(`/support/grants/${grant.id}/revoke`, {});
    expect(otherSupport.status).toBe(404);
    expect(otherSupport.body.code).toBe('SUPPORT_GRANT_NOT_FOUND');
    const member = await tenant.owner.post(`/support/grants/${grant.id}/revoke`, {});
    expect(member.status).toBe(403);
    expect(member.body.code).toBe('SUPPORT_STAFF_REQUIRED');
    expect((await support.get(`${orgs}/projects`)).status).toBe(200);
    const byAdmin = await t.admin().then((a) => a.post(`/support/grants/${grant.id}/revoke`, { reason: 'audit' }));
    expect(byAdmin.status).toBe(200);
    expect((await support.get(`${orgs}/projects`)).status).toBe(404);
  });
});

describe('lists', () => {
  it("owners and admins list the tenant's grants with reasons, approvers and times; support staff list their own; platform admins all, by tenant", async () => {
    const a = await createTenant(t, { tier: 'shared' });
    const b = await createTenant(t, { tier: 'dedicated' });
    const support = await t.login(SUPPORT);
    const support2 = await t.login(SUPPORT2);
    const g1 = await requestGrant(support, { tenant: a.slug, reason: 'first', ticket: 'SUP-1', access: 'read', minutes: 5 });
    const g2 = await requestGrant(support2, { tenant: a.slug, reason: 'second', access: 'write', minutes: 7 });
    const g3 = await requestGrant(support, { tenant: b.slug, reason: 'third', access: 'read', minutes: 9 });
    expect((await a.owner.post(`/orgs/${a.slug}/support-grants/${g2.id}/approve`)).status).toBe(200);

    const forA = await a.owner.get(`/orgs/${a.slug}/support-grants`);
    expect(forA.status).toBe(200);
    expect(forA.body.items.map((g: { id: string }) => g.id)).toEqual([g2.id, g1.id]);
    expect(forA.body.items[0]).toMatchObject({
      reason: 'second',
      access: 'write',
      minutes: 7,
      status: 'active',
      requester: { email: SUPPORT2 },
      approvedBy: { email: a.ownerEmail },
      approverKind: 'tenant',
    });
    for (const key of ['requestedAt', 'approvedAt', 'expiresAt']) expect(Number.isNaN(Date.parse(forA.body.items[0][key]))).toBe(false);
    expect(forA.body.items[1]).toMatchObject({ reason: 'first', ticket: 'SUP-1', approverKind: 'automatic' });
    const paged = await a.owner.get(`/orgs/${a.slug}/support-grants?limit=1`);
    expect(paged.body.items.map((g: { id: string }) => g.id)).toEqual([g2.id]);
    expect((await a.owner.get(`/orgs/${a.slug}/support-grants?limit=1&cursor=${paged.body.nextCursor}`)).body.items.map((g: { id: string }) => g.id)).toEqual([g1.id]);

    const memberEmail = `member@${a.slug}.test`;
    await a.owner.post(`/orgs/${a.slug}/members`, { email: memberEmail, role: 'member' });
    expect((await (await t.login(memberEmail)).get(`/orgs/${a.slug}/support-grants`)).body.code).toBe('ROLE_FORBIDDEN');

    const own = (await support.get('/support/grants?limit=100')).body.items.map((g: { id: string }) => g.id);
    expect(own).toEqual(expect.arrayContaining([g1.id, g3.id]));
    expect(own).not.toContain(g2.id);
    expect((await support.get(`/support/grants?tenant=${b.slug}`)).body.items.map((g: { id: string }) => g.id)).toEqual([g3.id]);
    expect((await support.get(`/support/grants/${g2.id}`)).status).toBe(404);

    const admin = await t.admin();
    expect((await admin.get(`/support/grants?tenant=${a.slug}`)).body.items.map((g: { id: string }) => g.id)).toEqual([g2.id, g1.id]);
    expect((await admin.get(`/support/grants/${g2.id}`)).body.reason).toBe('second');
    expect((await admin.get(`/support/grants?tenant=no-such-tenant`)).body.items).toEqual([]);
    const nobody = await a.owner.get('/support/grants');
    expect(nobody.status).toBe(403);
    expect(nobody.body.code).toBe('SUPPORT_STAFF_REQUIRED');
  });
});

describe('settings', () => {
  it('owners change them (admins read them); each change is in the platform log and applies to new grants', async () => {
    const tenant = await createTenant(t, { tier: 'schema' });
    const orgs = `/orgs/${tenant.slug}`;
    expect((await tenant.owner.get(`${orgs}/support-settings`)).body).toEqual({ readRequiresApproval: false, writeApprover: 'tenant', updatedAt: null });
    const adminEmail = `admin@${tenant.slug}.test`;
    await tenant.owner.post(`${orgs}/members`, { email: adminEmail, role: 'admin' });
    const admin = await t.login(adminEmail);
    expect((await admin.get(`${orgs}/support-settings`)).status).toBe(200);
    const byAdmin = await admin.patch(`${orgs}/support-settings`, { writeApprover: 'platform' });
    expect(byAdmin.status).toBe(403);
    expect(byAdmin.body.code).toBe('ROLE_FORBIDDEN');

    const changed = await tenant.owner.patch(`${orgs}/support-settings`, { writeApprover: 'platform' });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ readRequiresApproval: false, writeApprover: 'platform' });
    const both = await tenant.owner.patch(`${orgs}/support-settings`, { readRequiresApproval: true });
    expect(both.body).toMatchObject({ readRequiresApproval: true, writeApprover: 'platform' });
    expect(Number.isNaN(Date.parse(both.body.updatedAt))).toBe(false);
    expect((await tenant.owner.get(`${orgs}/support-settings`)).body).toEqual(both.body);
    const logged = await events(tenant.id, 'support.settings_changed');
    expect(logged.map((e) => e.metadata)).toEqual([{ writeApprover: 'platform' }, { readRequiresApproval: true }]);
    expect(logged.every((e) => e.actorKind === 'user')).toBe(true);

    const support = await t.login(SUPPORT);
    expect((await requestGrant(support, { tenant: tenant.slug, reason: 'r', access: 'write', minutes: 1 })).approverKind).toBe('platform');
    expect((await requestGrant(support, { tenant: tenant.slug, reason: 'r', access: 'read', minutes: 1 })).approverKind).toBe('tenant');
  });
});

describe('who may request, and input', () => {
  let tenant: TenantFixture;
  beforeAll(async () => {
    tenant = await createTenant(t, { tier: 'shared' });
  });

  it('only support staff request grants: not members, not platform admins, not an SSO session of a support email', async () => {
    const body = { tenant: tenant.slug, reason: 'r', access: 'read', minutes: 5 };
    for (const client of [tenant.owner, await t.admin(), await t.login(`someone@${uniqueSlug('x')}.test`)]) {
      const res = await client.post('/support/grants', body);
      expect(res.status).toBe(403);
      expect(res.body.code).toBe('SUPPORT_STAFF_REQUIRED');
    }
    // The support role comes from configuration and never from an identity provider.
    const user = await t.app.get(TenantDirectory).ensureUser(SUPPORT);
    const sso = await t.app.get(AuthService).issue(user, 'sso', tenant.id);
    const viaSso = await t.http.as(sso.accessToken).post('/support/grants', body);
    expect(viaSso.status).toBe(403);
    expect(viaSso.body.code).toBe('SUPPORT_STAFF_REQUIRED');
    expect((await (await t.login(SUPPORT)).post('/support/grants', body)).status).toBe(201);
    expect((await t.http.as(sso.accessToken).get(`/orgs/${tenant.slug}/projects`)).status).toBe(404);
  });

  it('refuses bad input with 400 naming the field, and unknown tenants with 404', async () => {
    const support = await t.login(SUPPORT);
    const ok = { tenant: tenant.slug, reason: 'customer asked', access: 'read', minutes: 5 };
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ...ok, reason: undefined }, 'reason'],
      [{ ...ok, reason: '' }, 'reason'],
      [{ ...ok, reason: 'x'.repeat(501) }, 'reason'],
      [{ ...ok, reason: 42 }, 'reason'],
      [{ ...ok, ticket: '' }, 'ticket'],
      [{ ...ok, ticket: 'x'.repeat(201) }, 'ticket'],
      [{ ...ok, access: 'admin' }, 'access'],
      [{ ...ok, access: undefined }, 'access'],
      [{ ...ok, minutes: 0 }, 'minutes'],
      [{ ...ok, minutes: MAX_MINUTES + 1 }, 'minutes'],
      [{ ...ok, minutes: 1.5 }, 'minutes'],
      [{ ...ok, minutes: '10' }, 'minutes'],
      [{ ...ok, minutes: undefined }, 'minutes'],
      [{ ...ok, tenant: 'Not A Slug' }, 'tenant'],
      [{ ...ok, tenant: undefined }, 'tenant'],
      [{ ...ok, role: 'owner' }, 'role'],
    ];
    for (const [body, field] of cases) {
      const res = await support.post('/support/grants', body);
      expect({ status: res.status, code: res.body.code, field: res.body.field }).toEqual({ status: 400, code: 'VALIDATION_FAILED', field });
    }
    expect((await support.post('/support/grants', { ...ok, minutes: MAX_MINUTES })).status).toBe(201);
    const unknown = await support.post('/support/grants', { ...ok, tenant: 'no-such-tenant' });
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: 'TENANT_NOT_FOUND', field: 'tenant' });

    const grant = await requestGrant(support, { ...ok, access: 'write' });
    const bad: Array<[HttpClient, string, string, unknown, string]> = [
      [tenant.owner, 'POST', `/orgs/${tenant.slug}/support-grants/not-a-uuid/approve`, undefined, 'id'],
      [tenant.owner, 'POST', `/orgs/${tenant.slug}/support-grants/${grant.id}/deny`, { reason: 'x'.repeat(501) }, 'reason'],
      [tenant.owner, 'POST', `/orgs/${tenant.slug}/support-grants/${grant.id}/revoke`, { reason: '' }, 'reason'],
      [tenant.owner, 'PATCH', `/orgs/${tenant.slug}/support-settings`, { writeApprover: 'nobody' }, 'writeApprover'],
      [tenant.owner, 'PATCH', `/orgs/${tenant.slug}/support-settings`, { readRequiresApproval: 'yes' }, 'readRequiresApproval'],
      [tenant.owner, 'PATCH', `/orgs/${tenant.slug}/support-settings`, { other: true }, 'other'],
      [tenant.owner, 'GET', `/orgs/${tenant.slug}/support-grants?limit=0`, undefined, 'limit'],
      [support, 'GET', '/support/grants?tenant=BAD', undefined, 'tenant'],
      [support, 'GET', '/support/grants/123', undefined, 'id'],
      [support, 'POST', '/support/grants/123/revoke', {}, 'id'],
    ];
    for (const [client, method, path, body, field] of bad) {
      const res = await client.request(method, path, body);
      expect({ path, status: res.status, code: res.body.code, field: res.body.field }).toEqual({ path, status: 400, code: 'VALIDATION_FAILED', field });
    }
    const missing = await tenant.owner.post(`/orgs/${tenant.slug}/support-grants/${uuidv7()}/approve`);
    expect(missing.status).toBe(404);
    expect(missing.body.code).toBe('SUPPORT_GRANT_NOT_FOUND');
    // Nothing above changed the grant.
    expect((await support.get(`/support/grants/${grant.id}`)).body.status).toBe('requested');
  });

  it('members pay nothing for support access: the grant check runs only for support staff who are not members', async () => {
    const check = jest.spyOn(t.app.get(SupportAccessService), 'activeGrant');
    try {
      for (let i = 0; i < 5; i++) expect((await tenant.owner.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);
      const stranger = await t.login(`stranger@${uniqueSlug('x')}.test`);
      expect((await stranger.get(`/orgs/${tenant.slug}/projects`)).status).toBe(404);
      expect(check).not.toHaveBeenCalled();
      const support = await t.login(SUPPORT2);
      await support.get(`/orgs/${tenant.slug}/projects`);
      await support.get(`/orgs/${tenant.slug}/projects`);
      expect(check).toHaveBeenCalledTimes(2);
    } finally {
      check.mockRestore();
    }
  });

  it('the OpenAPI document describes the support endpoints', async () => {
    const doc = (await t.http.get('/docs-json')).body;
    for (const path of ['/support/grants', '/support/grants/{id}/approve', '/support/grants/{id}/revoke', '/orgs/{slug}/support-grants', '/orgs/{slug}/support-grants/{id}/approve', '/orgs/{slug}/support-settings']) {
      expect(doc.paths[path]).toBeDefined();
    }
    expect(doc.components.schemas.RequestGrantDto.required).toEqual(expect.arrayContaining(['tenant', 'reason', 'access', 'minutes']));
    expect(doc.components.schemas.SupportGrantDto.properties.status.enum).toEqual(['requested', 'active', 'denied', 'revoked', 'expired']);
  });
});

describe('a use that cannot be audited', () => {
  it('is answered 503 without the data, rather than served without a trace', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    const [project] = await seedProjects(tenant, 1, 0);
    const support = await t.login(SUPPORT2);
    const grant = await requestGrant(support, { tenant: tenant.slug, reason: 'r', access: 'read', minutes: 5 });
    const path = `/orgs/${tenant.slug}/projects/${project.id}`;
    expect((await support.get(path)).body.name).toBe(project.name);
    const app = quoteIdent(t.harness.appUser);
    await owner(`REVOKE INSERT ON control.platform_audit_log FROM ${app}`);
    try {
      const res = await support.get(path);
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ status: 503, code: 'DATABASE_BUSY', requestId: res.headers.get('x-request-id') });
      expect(JSON.stringify(res.body)).not.toContain(project.name);
      // Members are not support access: unaffected.
      expect((await tenant.owner.get(path)).status).toBe(200);
    } finally {
      await owner(`GRANT INSERT ON control.platform_audit_log TO ${app}`);
    }
    expect((await support.get(path)).status).toBe(200);
    expect(await platformUses(tenant.id, grant.id)).toEqual([`GET ${path} 200`, `GET ${path} 200`]);
  });
});

describe('configuration', () => {
  it('reads SUPPORT_STAFF_EMAILS and SUPPORT_GRANT_MAX_MINUTES, and names a bad one', () => {
    const c = loadConfig({ SUPPORT_STAFF_EMAILS: ' Help@Platform.test , two@platform.test,', SUPPORT_GRANT_MAX_MINUTES: '120' });
    expect(c.auth.supportStaffEmails).toEqual(['help@platform.test', 'two@platform.test']);
    expect(c.support.grantMaxMinutes).toBe(120);
    expect(loadConfig({}).support.grantMaxMinutes).toBe(60);
    expect(() => loadConfig({ SUPPORT_STAFF_EMAILS: 'help@platform.test,nope' })).toThrow(/SUPPORT_STAFF_EMAILS must be a comma-separated list of emails/);
    expect(() => loadConfig({ SUPPORT_GRANT_MAX_MINUTES: '0' })).toThrow(/SUPPORT_GRANT_MAX_MINUTES/);
    expect(() => loadConfig({ SUPPORT_GRANT_MAX_MINUTES: '1441' })).toThrow(/SUPPORT_GRANT_MAX_MINUTES/);
  });
});
