/**
 * Directory sync end to end: the real SDK against the WorkOS stand-in, which records directory
 * and connection events and delivers them, signed, to the app's POST /webhooks/workos; the app
 * on a real PostgreSQL clone. Tenants are linked by writing control.sso_links and sso_domains
 * as the owner role (the linking endpoints are not under test here).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { WorkOS } from '@workos-inc/node';
import pg from 'pg';
import { ownerUrl, type HttpClient } from '../../libs/testing/index.js';
import { signWorkOSWebhook, startWorkOSStandIn, type StandInEvent, type WorkOSStandIn } from '../../libs/testing/workos-stand-in.js';
import { AuthService } from '../../src/auth/auth.service.js';
import { TenantDirectory } from '../../src/tenancy/tenant-directory.service.js';
import type { Role } from '../../src/tenancy/tenant-route.js';
import { cliEnv, runCli, tableRows } from '../support/cli-runner.js';
import { createTenant, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

const SECRET = 'whsec_directory_sync_test_secret';
const API_KEY = 'sk_test_directory_sync';
const CLIENT_ID = 'client_directory_sync';

let standIn: WorkOSStandIn;
let sdk: WorkOS;
let t: TestApp;
let owner: pg.Client;
let webhookUrl: string;
let workosEnv: Record<string, string>;

beforeAll(async () => {
  standIn = await startWorkOSStandIn({ apiKey: API_KEY, clientId: CLIENT_ID, webhookSecret: SECRET });
  sdk = new WorkOS(API_KEY, standIn.sdkOptions);
  workosEnv = {
    WORKOS_API_KEY: API_KEY,
    WORKOS_CLIENT_ID: CLIENT_ID,
    WORKOS_WEBHOOK_SECRET: SECRET,
    WORKOS_API_HOST: `http://127.0.0.1:${standIn.port}`,
    WORKOS_EVENTS_RETRY_BASE_MS: '50',
    WORKOS_EVENTS_MAX_ATTEMPTS: '3',
  };
  // A poll of a minute: anything processed within a test was processed because the webhook woke the processor.
  t = await startTestApp({ env: { ...workosEnv, WORKOS_EVENTS_POLL_MS: '60000' } });
  owner = new pg.Client({ connectionString: ownerUrl(t.harness, t.harness.primaryPort, t.database) });
  await owner.connect();
  webhookUrl = `${t.http.baseUrl}/webhooks/workos`;
  await standIn.setWebhook(webhookUrl);
});

afterAll(async () => {
  await owner?.end();
  await t?.close();
  await standIn?.stop();
});

// ---------------------------------------------------------------------------------------------
// helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Linked {
  tenant: TenantFixture;
  orgId: string;
  domain: string;
}

/** A tenant linked to a new WorkOS organization whose domain (the owner's) is verified. */
async function linkedTenant(mapping: Record<string, Role> = {}, defaultRole: Exclude<Role, 'owner'> = 'member'): Promise<Linked> {
  const tenant = await createTenant(t, { tier: 'shared' });
  const domain = tenant.ownerEmail.split('@')[1];
  const org = await sdk.organizations.createOrganization({ name: tenant.slug, externalId: tenant.id, domainData: [{ domain, state: 'verified' as never }] });
  await owner.query('INSERT INTO control.sso_links (tenant_id, workos_organization_id, role_mapping, default_role) VALUES ($1, $2, $3, $4)', [
    tenant.id,
    org.id,
    JSON.stringify(mapping),
    defaultRole,
  ]);
  await owner.query('INSERT INTO control.sso_domains (domain, tenant_id, verified) VALUES ($1, $2, true)', [domain, tenant.id]);
  return { tenant, orgId: org.id, domain };
}

interface EventRow {
  id: string;
  event: string;
  status: string;
  attempts: number;
  last_error: string | null;
  source: string;
  received_at: Date;
  processed_at: Date | null;
}

async function eventRow(id: string): Promise<EventRow | undefined> {
  const r = await owner.query<EventRow>('SELECT id, event, status, attempts, last_error, source, received_at, processed_at FROM control.workos_events WHERE id = $1', [id]);
  return r.rows[0];
}

/** Waits until the event is stored and no longer pending. */
async function settled(id: string, withinMs = 10_000): Promise<EventRow> {
  const until = Date.now() + withinMs;
  for (;;) {
    const row = await eventRow(id);
    if (row && row.status !== 'pending') return row;
    if (Date.now() > until) throw new Error(`event ${id} not settled within ${withinMs} ms: ${JSON.stringify(row)}`);
    await sleep(20);
  }
}

async function roleIn(tenantId: string, email: string): Promise<Role | null> {
  const r = await owner.query<{ role: Role }>(
    'SELECT m.role FROM control.memberships m JOIN control.users u ON u.id = m.user_id WHERE m.tenant_id = $1 AND u.email = $2',
    [tenantId, email],
  );
  return r.rows[0]?.role ?? null;
}

async function auditFor(eventId: string): Promise<Array<{ action: string; actor_kind: string; actor_id: string; tenant_id: string; metadata: Record<string, any> }>> {
  const r = await owner.query("SELECT action, actor_kind, actor_id, tenant_id, metadata FROM control.platform_audit_log WHERE metadata->>'eventId' = $1 ORDER BY at, id", [eventId]);
  return r.rows;
}

async function eventCount(): Promise<number> {
  return Number((await owner.query<{ n: string }>('SELECT count(*) AS n FROM control.workos_events')).rows[0].n);
}

/** The body WorkOS (the stand-in) sends for an event. */
const bodyOf = (e: StandInEvent) => JSON.stringify({ id: e.id, event: e.event, data: e.data, created_at: e.created_at });

function post(body: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  return fetch(webhookUrl, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body }).then(async (res) => ({
    status: res.status,
    body: JSON.parse(await res.text()),
  }));
}

/** A session as a sign-in opens it: through the tenant's identity provider (sso, with the tenant) or the development login. */
async function sessionFor(email: string, tenantId: string | null, method: 'sso' | 'dev' = 'sso'): Promise<HttpClient> {
  const user = await t.app.get(TenantDirectory).ensureUser(email);
  const issued = await t.app.get(AuthService).issue(user, method, tenantId);
  return t.http.as(issued.accessToken);
}

/** Records events without delivering them (a webhook outage), then restores delivery. */
async function withoutWebhooks<T>(fn: () => Promise<T>): Promise<T> {
  await standIn.settle();
  await standIn.clearWebhook();
  try {
    return await fn();
  } finally {
    await standIn.setWebhook(webhookUrl);
  }
}

// ---------------------------------------------------------------------------------------------

describe('provisioning from the directory', () => {
  it('makes an active directory user a member with the mapped role, processed at once after the webhook, audited', async () => {
    const x = await linkedTenant({ 'engineering-lead': 'admin' });
    const email = `ada@${x.domain}`;
    const { event } = await standIn.createDirectoryUser(x.orgId, { email, role: { slug: 'engineering-lead' } });
    const row = await settled(event!.id);
    expect(row).toMatchObject({ status: 'processed', attempts: 1, last_error: null, source: 'webhook', event: 'dsync.user.created' });
    // Woken by the delivery, not by the (one minute) poll.
    expect(row.processed_at!.getTime() - row.received_at.getTime()).toBeLessThan(2_000);
    expect(await roleIn(x.tenant.id, email)).toBe('admin');

    const identity = await owner.query('SELECT tenant_id, directory_user_id, idp_role, state FROM control.sso_identities WHERE workos_organization_id = $1', [x.orgId]);
    expect(identity.rows).toEqual([{ tenant_id: x.tenant.id, directory_user_id: (event!.data as { id: string }).id, idp_role: 'engineering-lead', state: 'active' }]);
    const audit = await auditFor(event!.id);
    expect(audit).toEqual([expect.objectContaining({ action: 'sso.directory_member_added', actor_kind: 'system', actor_id: 'workos-directory-sync', tenant_id: x.tenant.id })]);
    expect(audit[0].metadata).toMatchObject({ role: 'admin', event: 'dsync.user.created' });

    // The new member works in the tenant, with admin rights.
    const ada = await sessionFor(email, x.tenant.id);
    expect((await ada.post(`/orgs/${x.tenant.slug}/projects`, { name: 'from the directory' })).status).toBe(201);

    // dsync.activated (the directory came with the first user) marks the link.
    const [activated] = await standIn.events('dsync.activated').then((es) => es.filter((e) => e.data.organization_id === x.orgId));
    await settled(activated.id);
    expect((await owner.query('SELECT directory_state FROM control.sso_links WHERE tenant_id = $1', [x.tenant.id])).rows[0].directory_state).toBe('active');
  });

  it('ignores event types directory sync does not use, without errors', async () => {
    const x = await linkedTenant();
    const { event } = await standIn.createDirectoryGroup(x.orgId, { name: 'Everyone' });
    expect(event!.event).toBe('dsync.group.created');
    expect(await settled(event!.id)).toMatchObject({ status: 'ignored', attempts: 1 });
  });

  it('re-maps the role when groups change, and never gives owner unless the mapping names it', async () => {
    const x = await linkedTenant({ Admins: 'admin', Finance: 'billing' }, 'viewer');
    const email = `bob@${x.domain}`;
    const admins = (await standIn.createDirectoryGroup(x.orgId, { name: 'Admins' })).group;
    const owners = (await standIn.createDirectoryGroup(x.orgId, { name: 'owner' })).group;
    // The IdP calls this person an owner: nothing maps 'owner', so they get the default role.
    const { user, event } = await standIn.createDirectoryUser(x.orgId, { email, role: { slug: 'owner' } });
    await settled(event!.id);
    expect(await roleIn(x.tenant.id, email)).toBe('viewer');

    const added = (await standIn.addUserToGroup(admins.id, user.id)).event!;
    expect(await settled(added.id)).toMatchObject({ status: 'processed' });
    expect(await roleIn(x.tenant.id, email)).toBe('admin');
    const groups = async () => (await owner.query('SELECT idp_groups FROM control.sso_identities WHERE directory_user_id = $1', [user.id])).rows[0].idp_groups;
    expect(await groups()).toEqual(['Admins']);
    expect((await auditFor(added.id))[0]).toMatchObject({ action: 'sso.directory_role_changed', metadata: expect.objectContaining({ from: 'viewer', to: 'admin' }) });

    // A group literally called "owner" maps to nothing either.
    await settled((await standIn.addUserToGroup(owners.id, user.id)).event!.id);
    expect(await roleIn(x.tenant.id, email)).toBe('admin');
    expect(await groups()).toEqual(['Admins', 'owner']);

    const removed = (await standIn.removeUserFromGroup(admins.id, user.id)).event!;
    await settled(removed.id);
    expect(await roleIn(x.tenant.id, email)).toBe('viewer');
    expect(await groups()).toEqual(['owner']);

    // Once the tenant maps the group to owner, it does give owner.
    await owner.query(`UPDATE control.sso_links SET role_mapping = '{"owner": "owner"}' WHERE tenant_id = $1`, [x.tenant.id]);
    const again = (await standIn.addUserToGroup(admins.id, user.id)).event!;
    await settled(again.id);
    expect(await roleIn(x.tenant.id, email)).toBe('owner');
  });
});

describe('webhook deliveries', () => {
  it('stores and processes an event once though it is delivered three times and concurrently', async () => {
    const x = await linkedTenant();
    const email = `cleo@${x.domain}`;
    const event = await withoutWebhooks(async () => (await standIn.createDirectoryUser(x.orgId, { email })).event!);
    const body = bodyOf(event);
    // Six deliveries at once: exactly one stores it.
    const answers = await Promise.all(Array.from({ length: 6 }, () => post(body, { 'workos-signature': signWorkOSWebhook(body, SECRET) })));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
    for (const a of answers) expect(a.body).toMatchObject({ received: true, id: event.id });
    expect(answers.filter((a) => a.body.stored === true)).toHaveLength(1);
    // Then WorkOS's retries: three more, all acknowledged.
    const redelivered = await standIn.deliver(event.id, { times: 3 });
    expect(redelivered.map((d) => d.status)).toEqual([200, 200, 200]);
    const row = await settled(event.id);
    expect(row).toMatchObject({ status: 'processed', attempts: 1 });
    expect(await roleIn(x.tenant.id, email)).toBe('member');
    expect((await auditFor(event.id)).map((a) => a.action)).toEqual(['sso.directory_member_added']);

    // A replay long after: 200 (WorkOS must stop retrying) and nothing changes.
    const replay = await post(body, { 'workos-signature': signWorkOSWebhook(body, SECRET) });
    expect(replay).toMatchObject({ status: 200, body: { received: true, stored: false } });
    await sleep(200);
    expect(await eventRow(event.id)).toMatchObject({ status: 'processed', attempts: 1, processed_at: row.processed_at });
    expect(await auditFor(event.id)).toHaveLength(1);
  });

  it('refuses forged, stale, altered, unsigned and malformed deliveries with 400 and stores nothing', async () => {
    const x = await linkedTenant();
    const email = `mallory@${x.domain}`;
    const event = await withoutWebhooks(async () => (await standIn.createDirectoryUser(x.orgId, { email })).event!);
    const before = await eventCount();
    const body = bodyOf(event);
    const refusals = [
      await post(body, { 'workos-signature': signWorkOSWebhook(body, 'whsec_not_the_secret') }),
      await post(body, { 'workos-signature': signWorkOSWebhook(body, SECRET, Date.now() - 10 * 60_000) }),
      await post(body.replace(email, `eve@${x.domain}`), { 'workos-signature': signWorkOSWebhook(body, SECRET) }),
      await post(body, {}),
      await post(body, { 'workos-signature': 'v1=deadbeef' }),
    ];
    for (const r of refusals) {
      expect(r.status).toBe(400);
      expect(r.body).toEqual({ status: 400, code: 'WEBHOOK_SIGNATURE_INVALID', message: expect.any(String), field: 'WorkOS-Signature', requestId: expect.any(String) });
    }
    const malformed = '{"id": "event_malformed", "event": ';
    const notJson = await post(malformed, { 'workos-signature': signWorkOSWebhook(malformed, SECRET) });
    expect(notJson.status).toBe(400);
    expect(notJson.body).toMatchObject({ status: 400, code: 'MALFORMED_BODY' });
    const notAnEvent = '{"hello": "world"}';
    const signedNonsense = await post(notAnEvent, { 'workos-signature': signWorkOSWebhook(notAnEvent, SECRET) });
    expect(signedNonsense.body).toMatchObject({ status: 400, code: 'MALFORMED_BODY' });

    // The stand-in's own bad deliveries are refused the same way.
    const bad = [
      ...(await standIn.deliver(event.id, { secret: 'whsec_wrong_one' })),
      ...(await standIn.deliver(event.id, { timestampMs: Date.now() - 4 * 60_000 })),
      ...(await standIn.deliver(event.id, { alterBody: true })),
    ];
    expect(bad.map((d) => d.status)).toEqual([400, 400, 400]);

    expect(await eventCount()).toBe(before);
    expect(await eventRow(event.id)).toBeUndefined();
    expect(await roleIn(x.tenant.id, email)).toBeNull();
    expect(await roleIn(x.tenant.id, `eve@${x.domain}`)).toBeNull();

    // The genuine delivery of the same event is accepted.
    const [good] = await standIn.deliver(event.id);
    expect(good.status).toBe(200);
    expect(await settled(event.id)).toMatchObject({ status: 'processed' });
    expect(await roleIn(x.tenant.id, email)).toBe('member');
  });
});

describe('deprovisioning', () => {
  it('removes the member of a user set inactive and revokes their SSO sessions: the next request is refused', async () => {
    const x = await linkedTenant();
    const y = await linkedTenant();
    const email = `dora@${x.domain}`;
    const { user, event } = await standIn.createDirectoryUser(x.orgId, { email });
    await settled(event!.id);
    // Dora is also a member of Y (added by Y's owner), with a session Y's IdP opened.
    expect((await y.tenant.owner.post(`/orgs/${y.tenant.slug}/members`, { email, role: 'member' })).status).toBe(201);
    const sso = await sessionFor(email, x.tenant.id);
    const dev = await sessionFor(email, null, 'dev');
    const ssoOfY = await sessionFor(email, y.tenant.id);
    expect((await sso.get(`/orgs/${x.tenant.slug}/projects`)).status).toBe(200);
    expect((await dev.get(`/orgs/${x.tenant.slug}/projects`)).status).toBe(200);

    const suspended = (await standIn.suspendDirectoryUser(user.id)).event!;
    expect(suspended.event).toBe('dsync.user.updated');
    expect(await settled(suspended.id)).toMatchObject({ status: 'processed', attempts: 1 });
    expect(await roleIn(x.tenant.id, email)).toBeNull();

    // The SSO session X's identity provider opened is over, everywhere.
    expect(await sso.get(`/orgs/${x.tenant.slug}/projects`)).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED' } });
    expect((await sso.get('/me')).status).toBe(401);
    // Another session of the same person no longer reaches X (as if X did not exist) ...
    expect(await dev.get(`/orgs/${x.tenant.slug}/projects`)).toMatchObject({ status: 404, body: { code: 'TENANT_NOT_FOUND' } });
    // ... but Y is untouched: membership and the session Y's IdP opened.
    expect((await ssoOfY.get(`/orgs/${y.tenant.slug}/projects`)).status).toBe(200);
    expect(await roleIn(y.tenant.id, email)).toBe('member');

    const [audit] = await auditFor(suspended.id);
    expect(audit).toMatchObject({
      action: 'sso.directory_member_deprovisioned',
      tenant_id: x.tenant.id,
      actor_id: 'workos-directory-sync',
      metadata: expect.objectContaining({ reason: 'inactive', membership: 'removed', sessionsRevoked: 1, changedAttributes: ['state'] }),
    });
    expect((await owner.query('SELECT state FROM control.sso_identities WHERE directory_user_id = $1', [user.id])).rows[0].state).toBe('inactive');
    const revoked = await owner.query("SELECT tenant_id, revoked_reason FROM control.sessions WHERE revoked_at IS NOT NULL AND user_id = (SELECT id FROM control.users WHERE email = $1)", [email]);
    expect(revoked.rows).toEqual([{ tenant_id: x.tenant.id, revoked_reason: 'directory sync: user inactive' }]);

    // IT reactivates her: member again.
    const back = (await standIn.updateDirectoryUser(user.id, { state: 'active' })).event!;
    await settled(back.id);
    expect(await roleIn(x.tenant.id, email)).toBe('member');
  });

  it('removes the member of a deleted directory user and revokes their SSO sessions', async () => {
    const x = await linkedTenant({ Admins: 'admin' });
    const email = `eli@${x.domain}`;
    const { user, event } = await standIn.createDirectoryUser(x.orgId, { email, role: { slug: 'Admins' } });
    await settled(event!.id);
    expect(await roleIn(x.tenant.id, email)).toBe('admin');
    const sso = await sessionFor(email, x.tenant.id);
    expect((await sso.get('/me')).status).toBe(200);

    const deleted = (await standIn.deleteDirectoryUser(user.id)).event!;
    expect(await settled(deleted.id)).toMatchObject({ status: 'processed' });
    expect(await roleIn(x.tenant.id, email)).toBeNull();
    expect((await sso.get('/me')).status).toBe(401);
    expect((await sso.get(`/orgs/${x.tenant.slug}/projects`)).status).toBe(401);
    expect((await auditFor(deleted.id))[0].metadata).toMatchObject({ reason: 'deleted', membership: 'removed', sessionsRevoked: 1 });
  });

  it("keeps the tenant's last owner a member (and owner) but revokes their SSO sessions", async () => {
    const x = await linkedTenant();
    const email = x.tenant.ownerEmail;
    const { user, event } = await standIn.createDirectoryUser(x.orgId, { email });
    const created = await settled(event!.id);
    // The directory maps them to member; an owner (here the last one) is not demoted by a directory.
    expect(created.last_error).toMatch(/an owner keeps the owner role/);
    expect(await roleIn(x.tenant.id, email)).toBe('owner');
    const sso = await sessionFor(email, x.tenant.id);

    const deleted = (await standIn.deleteDirectoryUser(user.id)).event!;
    const row = await settled(deleted.id);
    expect(row).toMatchObject({ status: 'processed' });
    expect(row.last_error).toMatch(/last owner keeps the membership/);
    expect(await roleIn(x.tenant.id, email)).toBe('owner');
    expect((await sso.get('/me')).status).toBe(401);
    expect((await auditFor(deleted.id))[0].metadata).toMatchObject({ membership: 'kept_last_owner', sessionsRevoked: 1 });
    // Their development-login session (not opened by the IdP) still works.
    expect((await x.tenant.owner.get(`/orgs/${x.tenant.slug}/projects`)).status).toBe(200);
  });
});

describe('tenants that cannot take the event', () => {
  it('ignores events of an organization no tenant is linked to', async () => {
    const org = await sdk.organizations.createOrganization({ name: 'unlinked', domainData: [{ domain: 'unlinked-org.test', state: 'verified' as never }] });
    const { event } = await standIn.createDirectoryUser(org.id, { email: 'nobody@unlinked-org.test' });
    const row = await settled(event!.id);
    expect(row).toMatchObject({ status: 'ignored', attempts: 1 });
    expect(row.last_error).toMatch(/not linked/);
    expect((await owner.query("SELECT 1 FROM control.users WHERE email = 'nobody@unlinked-org.test'")).rows).toHaveLength(0);
  });

  it('applies events of a suspended tenant harmlessly: nobody gets in meanwhile, the directory is kept', async () => {
    const x = await linkedTenant();
    const admin = await t.admin();
    expect((await admin.post(`/tenants/${x.tenant.id}/suspend`, { reason: 'invoice unpaid' })).status).toBe(200);
    const email = `finn@${x.domain}`;
    const { user, event } = await standIn.createDirectoryUser(x.orgId, { email });
    expect(await settled(event!.id)).toMatchObject({ status: 'processed', attempts: 1, last_error: null });
    const finn = await sessionFor(email, x.tenant.id);
    expect(await finn.get(`/orgs/${x.tenant.slug}/projects`)).toMatchObject({ status: 403, body: { code: 'TENANT_SUSPENDED' } });
    await settled((await standIn.deleteDirectoryUser(user.id)).event!.id);
    expect(await roleIn(x.tenant.id, email)).toBeNull();
    expect((await admin.post(`/tenants/${x.tenant.id}/reactivate`)).status).toBe(200);
    expect((await x.tenant.owner.get(`/orgs/${x.tenant.slug}/projects`)).status).toBe(200);
  });
});

describe('connections', () => {
  it('follows connection.activated, deactivated and deleted in sso_links.connection_state', async () => {
    const x = await linkedTenant();
    const state = async () => (await owner.query('SELECT connection_state FROM control.sso_links WHERE tenant_id = $1', [x.tenant.id])).rows[0].connection_state;
    expect(await state()).toBe('none');
    const { connection, event } = await standIn.createConnection(x.orgId);
    await settled(event!.id);
    expect(await state()).toBe('active');
    const off = (await standIn.deactivateConnection(connection.id)).event!;
    await settled(off.id);
    expect(await state()).toBe('inactive');
    expect((await auditFor(off.id))[0]).toMatchObject({ action: 'sso.connection_state_changed', metadata: expect.objectContaining({ from: 'active', to: 'inactive' }) });
    await settled((await standIn.activateConnection(connection.id)).event!.id);
    expect(await state()).toBe('active');
    await settled((await standIn.deleteConnection(connection.id)).event!.id);
    expect(await state()).toBe('none');
  });
});

describe('domain verification', () => {
  it('marks a domain verified when IT verifies it in the Admin Portal, so sign-ins route to the tenant', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    const domain = `${tenant.slug}.example.com`;
    const linked = await tenant.owner.post(`/orgs/${tenant.slug}/sso`, { domains: [domain] });
    expect(linked.body.domains).toEqual([{ domain, verified: false }]);
    expect((await t.http.get(`/auth/sso/authorize?email=someone%40${domain}`)).status).toBe(404);
    await standIn.verifyDomain(linked.body.workosOrganizationId, domain);
    const [event] = (await standIn.events('organization_domain.verified')).slice(-1);
    expect(await settled(event.id)).toMatchObject({ status: 'processed' });
    const rows = await owner.query('SELECT verified FROM control.sso_domains WHERE domain = $1', [domain]);
    expect(rows.rows).toEqual([{ verified: true }]);
    expect(await auditFor(event.id)).toEqual([expect.objectContaining({ action: 'sso.domain_verification_changed', tenant_id: tenant.id })]);
  });
});

describe('isolation', () => {
  it("an event of organization X naming tenant Y's person or email never changes tenant Y", async () => {
    const x = await linkedTenant({ Admins: 'admin' });
    const y = await linkedTenant();
    const yEmail = `yuri@${y.domain}`;
    const yUser = await standIn.createDirectoryUser(y.orgId, { email: yEmail });
    await settled(yUser.event!.id);
    const ySession = await sessionFor(yEmail, y.tenant.id);

    // X's directory hands out Y's address (a domain X has not verified): ignored.
    const grab = await standIn.createDirectoryUser(x.orgId, { email: yEmail, role: { slug: 'Admins' } });
    const grabbed = await settled(grab.event!.id);
    expect(grabbed.status).toBe('ignored');
    expect(grabbed.last_error).toMatch(/not a verified domain/);

    // Forged events for X carrying Y's directory user id (signed with the real secret, as only
    // a compromised WorkOS account could): refused, for provisioning and deprovisioning alike.
    const forge = async (event: string, state: 'active' | 'inactive') => {
      const body = JSON.stringify({
        id: `event_forged${Math.random().toString(36).slice(2, 12)}`,
        event,
        created_at: new Date().toISOString(),
        data: { ...yUser.user, organization_id: x.orgId, state, role: { slug: 'Admins' } },
      });
      const res = await post(body, { 'workos-signature': signWorkOSWebhook(body, SECRET) });
      expect(res.status).toBe(200);
      return settled(res.body.id);
    };
    for (const row of [await forge('dsync.user.created', 'active'), await forge('dsync.user.updated', 'inactive'), await forge('dsync.user.deleted', 'inactive')]) {
      expect(row.status).toBe('ignored');
      expect(row.last_error).toMatch(/another organization/);
    }

    expect(await roleIn(y.tenant.id, yEmail)).toBe('member');
    expect(await roleIn(x.tenant.id, yEmail)).toBeNull();
    expect((await ySession.get(`/orgs/${y.tenant.slug}/projects`)).status).toBe(200);
    const identities = await owner.query('SELECT workos_organization_id, tenant_id, state FROM control.sso_identities WHERE directory_user_id = $1', [yUser.user.id]);
    expect(identities.rows).toEqual([{ workos_organization_id: y.orgId, tenant_id: y.tenant.id, state: 'active' }]);
    const yAudit = await owner.query("SELECT action FROM control.platform_audit_log WHERE tenant_id = $1 AND action LIKE 'sso.directory_member%'", [y.tenant.id]);
    expect(yAudit.rows).toEqual([{ action: 'sso.directory_member_added' }]);
  });
});

describe('reconciliation', () => {
  it('pulls the events webhooks missed from the cursor, applies them once, and never undoes a newer event', async () => {
    const x = await linkedTenant();
    const [gus, hal, ivy] = ['gus', 'hal', 'ivy'].map((n) => `${n}@${x.domain}`);
    const delivered = await standIn.createDirectoryUser(x.orgId, { email: gus });
    await settled(delivered.event!.id);
    const missed = await withoutWebhooks(async () => [
      (await standIn.createDirectoryUser(x.orgId, { email: hal })).event!,
      (await standIn.createDirectoryUser(x.orgId, { email: ivy })).event!,
    ]);
    // Ivy's deletion arrives by webhook before her (missed) creation is pulled.
    const ivyId = (missed[1].data as { id: string }).id;
    const ivyDeleted = (await standIn.deleteDirectoryUser(ivyId)).event!;
    expect(await settled(ivyDeleted.id)).toMatchObject({ status: 'ignored' });
    expect(await roleIn(x.tenant.id, hal)).toBeNull();
    const storedBefore = await eventCount();

    const env = cliEnv(t.harness, t.database, t.config.auth.jwtSecret!, { ...workosEnv, WORKOS_EVENTS_POLL_MS: '0' });
    const first = await runCli({ cwd: process.cwd(), env }, 'sso', 'reconcile');
    expect({ code: first.code, stderr: first.stderr }).toMatchObject({ code: 0 });
    // New: Hal's and Ivy's creation, and the dsync.activated events other tests' outages missed.
    const page = /^page 1: (\d+) event\(s\), (\d+) new; cursor event_/m.exec(first.stderr);
    expect(page).not.toBeNull();
    const fetched = Number(page![1]);
    const stored = Number(page![2]);
    const rows = tableRows(first.stdout);
    const created = rows.find((r) => r[0] === 'dsync.user.created')!;
    // [event, fetched, new, already stored, processed, ignored, pending, failed]
    expect(created[2]).toBe('2');
    expect(Number(created[3])).toBe(Number(created[1]) - 2);
    expect(rows.at(-1)!.slice(0, 3)).toEqual(['total', String(fetched), String(stored)]);
    expect(rows.at(-1)![7]).toBe('0');
    expect(first.stdout).toMatch(/cursor: \(start\) -> event_\w+ in 1 page\(s\)/);

    expect(await eventCount()).toBe(storedBefore + stored);
    expect(await settled(missed[0].id)).toMatchObject({ status: 'processed', source: 'reconcile' });
    expect(await roleIn(x.tenant.id, hal)).toBe('member');
    // Ivy's creation is older than her deletion: she is not provisioned again.
    const late = await settled(missed[1].id);
    expect(late).toMatchObject({ status: 'ignored' });
    expect(late.last_error).toMatch(/deleted/);
    expect(await roleIn(x.tenant.id, ivy)).toBeNull();
    // What webhooks had delivered was neither stored again nor applied twice.
    expect(await eventRow(delivered.event!.id)).toMatchObject({ source: 'webhook', attempts: 1 });
    expect(await auditFor(delivered.event!.id)).toHaveLength(1);

    // From the cursor: nothing new.
    const second = await runCli({ cwd: process.cwd(), env }, 'sso', 'reconcile', '--json');
    expect(second.code).toBe(0);
    const report = JSON.parse(second.stdout);
    expect(report.pages).toBe(0);
    expect(report.cursorBefore).toBe(report.cursorAfter);
    expect(await eventCount()).toBe(storedBefore + stored);

    // A late webhook delivery of a reconciled event: 200, nothing stored or applied again.
    const [late200] = await standIn.deliver(missed[0].id);
    expect(late200.status).toBe(200);
    expect(await auditFor(missed[0].id)).toHaveLength(1);
  });
});

describe('several instances and failures', () => {
  let second: TestApp;

  beforeAll(async () => {
    // A second instance on the same control plane, polling often: the safety net and retries.
    second = await startTestApp({ database: t.database, env: { ...workosEnv, JWT_SECRET: t.config.auth.jwtSecret!, WORKOS_EVENTS_POLL_MS: '100' } });
  });

  afterAll(async () => {
    await second?.close();
  });

  it('never processes one event twice when two instances receive and process a burst', async () => {
    const x = await linkedTenant();
    const y = await linkedTenant();
    const events = await withoutWebhooks(async () => {
      const out: StandInEvent[] = [];
      for (let i = 0; i < 20; i++) out.push((await standIn.createDirectoryUser(i % 2 ? x.orgId : y.orgId, { email: `burst${i}@${(i % 2 ? x : y).domain}` })).event!);
      return out;
    });
    const urls = [webhookUrl, `${second.http.baseUrl}/webhooks/workos`];
    // Every event to both instances at once, twice.
    await Promise.all(events.flatMap((e) => [...urls, ...urls].map((url) => standIn.deliver(e.id, { url }))));
    for (const e of events) expect(await settled(e.id)).toMatchObject({ status: 'processed', attempts: 1 });
    for (const e of events) expect(await auditFor(e.id)).toHaveLength(1);
    const members = await owner.query("SELECT count(*)::int AS n FROM control.memberships m JOIN control.users u ON u.id = m.user_id WHERE u.email LIKE 'burst%'");
    expect(members.rows[0].n).toBe(20);
  });

  it('retries a failing event with backoff and marks it failed after the last attempt; later ones of its organization wait', async () => {
    const x = await linkedTenant();
    const z = await linkedTenant();
    // A fault in the database itself: writing these identities fails until the trigger is dropped.
    await owner.query('CREATE SEQUENCE control.test_identity_fault_once');
    // SECURITY DEFINER: the app's role may not use the test's sequence.
    await owner.query(`CREATE FUNCTION control.test_identity_fault() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = control AS $$
      BEGIN
        IF NEW.idp_id = 'boom-forever' OR (NEW.idp_id = 'boom-once' AND nextval('control.test_identity_fault_once') = 1) THEN
          RAISE EXCEPTION 'injected failure for %', NEW.idp_id;
        END IF;
        RETURN NEW;
      END $$`);
    await owner.query(`CREATE TRIGGER test_identity_fault BEFORE INSERT OR UPDATE ON control.sso_identities
      FOR EACH ROW EXECUTE FUNCTION control.test_identity_fault()`);
    try {
      const doomed = (await standIn.createDirectoryUser(x.orgId, { email: `doomed@${x.domain}`, idp_id: 'boom-forever' })).event!;
      const behind = (await standIn.createDirectoryUser(x.orgId, { email: `behind@${x.domain}` })).event!;
      const flaky = (await standIn.createDirectoryUser(z.orgId, { email: `flaky@${z.domain}`, idp_id: 'boom-once' })).event!;

      // Fails once, then goes through on the retry.
      const retried = await settled(flaky.id);
      expect(retried).toMatchObject({ status: 'processed', attempts: 2, last_error: null });
      expect(await roleIn(z.tenant.id, `flaky@${z.domain}`)).toBe('member');

      // Attempts at about 0, +50 and +100 ms (WORKOS_EVENTS_RETRY_BASE_MS=50, MAX_ATTEMPTS=3): then failed.
      const failed = await settled(doomed.id);
      expect(failed).toMatchObject({ status: 'failed', attempts: 3 });
      expect(failed.last_error).toMatch(/injected failure for boom-forever/);
      expect(failed.processed_at!.getTime() - failed.received_at.getTime()).toBeGreaterThanOrEqual(150);
      expect(await roleIn(x.tenant.id, `doomed@${x.domain}`)).toBeNull();
      // The next event of the same organization waited for it, then went through.
      const after = await settled(behind.id);
      expect(after).toMatchObject({ status: 'processed', attempts: 1 });
      expect(after.processed_at!.getTime()).toBeGreaterThanOrEqual(failed.processed_at!.getTime());
      expect(await roleIn(x.tenant.id, `behind@${x.domain}`)).toBe('member');
      await sleep(300);
      expect(await eventRow(doomed.id)).toMatchObject({ status: 'failed', attempts: 3 });
    } finally {
      await owner.query('DROP TRIGGER test_identity_fault ON control.sso_identities');
      await owner.query('DROP FUNCTION control.test_identity_fault()');
      await owner.query('DROP SEQUENCE control.test_identity_fault_once');
    }
    // Failed for good stays failed until an operator asks for a retry.
    const env = cliEnv(t.harness, t.database, t.config.auth.jwtSecret!, { ...workosEnv, WORKOS_EVENTS_POLL_MS: '0' });
    const run = await runCli({ cwd: process.cwd(), env }, 'sso', 'reconcile', '--retry-failed');
    expect(run.stderr).toMatch(/^1 failed event\(s\) queued again$/m);
    expect(run.code).toBe(0);
    expect(await roleIn(x.tenant.id, `doomed@${x.domain}`)).toBe('member');
  });
});
