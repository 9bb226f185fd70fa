import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Stripe from 'stripe';
import { HttpClient, withSuperuser } from '../../libs/testing/index.js';
import { platformEventsOf } from '../../src/lifecycle/platform-audit.js';
import type { Role } from '../../src/tenancy/tenant-route.js';
import { cliEnv, CliRun, runCli, tableRows } from '../support/cli-runner.js';
import { createTenant, TenantFixture, uniqueSlug } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Billing as tenants, platform admins and operators see it: who may read a tenant's billing, the
 * plan catalogue, plan changes by platform admins (with their validation and audit), and the
 * way from past due through read-only back to paid, end to end through Stripe webhooks.
 */
const SECRET = `whsec_${randomBytes(24).toString('hex')}`;
const GRACE_DAYS = 7;

let t: TestApp;
let admin: HttpClient;
let cwd: string;

beforeAll(async () => {
  t = await startTestApp({
    env: { STRIPE_WEBHOOK_SECRET: SECRET, BILLING_PAST_DUE_GRACE_DAYS: String(GRACE_DAYS), LIFECYCLE_SWEEP_INTERVAL_MS: '0' },
  });
  admin = await t.admin();
  cwd = mkdtempSync(join(tmpdir(), 'billing-cli-'));
});
afterAll(async () => {
  await t?.close();
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

const owner = <T = Record<string, any>>(sql: string, params: unknown[] = []) => t.ownerQuery<T>(sql, params);

async function billingRow(tenantId: string): Promise<Record<string, any>> {
  const [row] = await owner('SELECT * FROM control.organization_billing WHERE tenant_id = $1', [tenantId]);
  return row;
}

function put(client: HttpClient, tenantId: string, body: unknown) {
  return client.request('PUT', `/tenants/${tenantId}/billing`, body);
}

async function member(tenant: TenantFixture, role: Role): Promise<HttpClient> {
  const email = `${role}-${randomBytes(3).toString('hex')}@${tenant.slug}.test`;
  const added = await tenant.owner.post(`/orgs/${tenant.slug}/members`, { email, role });
  expect(added.status).toBe(201);
  return t.login(email);
}

async function tenantAudit(tenant: TenantFixture, action: string): Promise<Array<Record<string, any>>> {
  const res = await tenant.owner.get(`/orgs/${tenant.slug}/audit?action=${action}`);
  expect(res.status).toBe(200);
  return res.body.items;
}

/** Polls until `check` holds (a NOTIFY from a change made with plain SQL has to reach the app). */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`still not ${what} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A Stripe event, signed with the SDK's own test helper, posted as Stripe does. */
async function stripe(type: string, object: Record<string, unknown>, created: number) {
  const payload = JSON.stringify({ id: `evt_${randomBytes(10).toString('hex')}`, object: 'event', created, livemode: false, type, data: { object } });
  const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret: SECRET });
  const res = await t.http.withHeaders({ 'content-type': 'application/json', 'stripe-signature': signature }).request('POST', '/webhooks/stripe', payload);
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ duplicate: false, outcome: 'applied' });
}

/** Stripe ids of a tenant's customer and subscription (the random end of its UUIDv7, not its time). */
const stripeIds = (tenantId: string) => ({ customer: `cus_${tenantId.slice(-12)}`, subscription: `sub_${tenantId.slice(-12)}` });

function subscription(tenantId: string, status: string, plan: string): Record<string, unknown> {
  return {
    id: stripeIds(tenantId).subscription,
    object: 'subscription',
    customer: stripeIds(tenantId).customer,
    status,
    metadata: { tenant_id: tenantId },
    trial_end: null,
    items: { object: 'list', data: [{ id: 'si_1', object: 'subscription_item', quantity: 5, current_period_end: Math.floor(Date.now() / 1000) + 30 * 86_400, price: { id: 'price_1', lookup_key: plan } }] },
  };
}

describe('GET /orgs/:slug/billing', () => {
  let tenant: TenantFixture;
  beforeAll(async () => {
    tenant = await createTenant(t, { tier: 'shared', plan: 'pro' });
  });

  it('shows owners the plan with its features, the status, periods and seats', async () => {
    const res = await tenant.owner.get(`/orgs/${tenant.slug}/billing`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      tenantId: tenant.id,
      slug: tenant.slug,
      plan: {
        key: 'pro',
        name: 'Pro',
        rank: 20,
        limits: { seats: 25, projects: 50, tasks_per_project: 5000, api_requests_per_minute: 6000, statement_timeout_ms: 5000, concurrent_requests: 4 },
        flags: { tier_shared: true, tier_schema: true, tier_dedicated: false },
      },
      status: 'trialing',
      trialEndsAt: expect.any(String),
      currentPeriodEnd: null,
      pastDueSince: null,
      readOnly: false,
      // A trial that ends unpaid turns read-only after the grace period.
      readOnlySince: expect.any(String),
      seatsPurchased: null,
      seatsUsed: 1,
      providerCustomerId: null,
      providerSubscriptionId: null,
      updatedAt: expect.any(String),
    });
    expect(new Date(res.body.readOnlySince).getTime() - new Date(res.body.trialEndsAt).getTime()).toBe(GRACE_DAYS * 86_400_000);
  });

  it('shows billing members too, and counts every member as a seat used', async () => {
    const billing = await member(tenant, 'billing');
    const res = await billing.get(`/orgs/${tenant.slug}/billing`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ tenantId: tenant.id, plan: { key: 'pro' }, seatsUsed: 2 });
  });

  it.each<Role>(['admin', 'member', 'viewer'])('refuses the %s role with 403 ROLE_FORBIDDEN', async (role) => {
    const client = await member(tenant, role);
    const res = await client.get(`/orgs/${tenant.slug}/billing`);
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('ROLE_FORBIDDEN');
  });

  it('answers non-members (a platform admin included) 404, as for a tenant that does not exist', async () => {
    const other = await createTenant(t, { tier: 'shared', plan: 'free' });
    for (const client of [other.owner, admin]) {
      const res = await client.get(`/orgs/${tenant.slug}/billing`);
      expect(res.status).toBe(404);
      expect(res.body.code).toBe('TENANT_NOT_FOUND');
    }
    expect((await other.owner.get(`/orgs/${uniqueSlug('nope')}/billing`)).body.code).toBe('TENANT_NOT_FOUND');
    expect((await t.http.get(`/orgs/${tenant.slug}/billing`)).status).toBe(401);
  });
});

describe('GET /plans', () => {
  it('lists the catalogue, cheapest first, with features as seeded, to anyone signed in', async () => {
    const someone = await t.login(`someone@${uniqueSlug('x')}.test`);
    const res = await someone.get('/plans');
    expect(res.status).toBe(200);
    expect(res.body.items.map((p: { key: string }) => p.key)).toEqual(['free', 'pro', 'enterprise']);
    expect(res.body.items[0]).toEqual({
      key: 'free',
      name: 'Free',
      rank: 10,
      limits: { seats: 3, projects: 3, tasks_per_project: 100, api_requests_per_minute: 600, statement_timeout_ms: 2000, concurrent_requests: 2 },
      flags: { tier_shared: true, tier_schema: false, tier_dedicated: false },
    });
    expect(res.body.items[2].limits).toMatchObject({ seats: null, projects: null, statement_timeout_ms: 30000 });
    expect(res.body.items[2].flags).toEqual({ tier_shared: true, tier_schema: true, tier_dedicated: true });
    expect((await t.http.get('/plans')).status).toBe(401);
  });
});

describe('PUT /tenants/:id/billing (platform admins)', () => {
  it('changes the plan, effective at once, recorded in both audit logs in the same transaction', async () => {
    const tenant = await createTenant(t, { tier: 'shared', plan: 'free' });
    // The cache knows the free plan before the change.
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/billing`)).body.plan.key).toBe('free');
    const res = await put(admin, tenant.id, { plan: 'pro', status: 'active', reason: 'contract 2026-014 signed' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ tenantId: tenant.id, plan: { key: 'pro' }, status: 'active', readOnlySince: null });
    expect(await billingRow(tenant.id)).toMatchObject({ plan_key: 'pro', status: 'active' });
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/billing`)).body).toMatchObject({ plan: { key: 'pro' }, status: 'active' });

    const adminId = (await admin.get('/me')).body.id;
    const platform = await platformEventsOf(t.pools().control(), tenant.id, 'billing.plan_changed');
    expect(platform).toHaveLength(1);
    expect(platform[0]).toMatchObject({
      actorKind: 'user',
      actorId: adminId,
      targetType: 'tenant_billing',
      requestId: expect.any(String),
      metadata: { slug: tenant.slug, reason: 'contract 2026-014 signed', changes: { planKey: { from: 'free', to: 'pro' }, status: { from: 'trialing', to: 'active' } } },
    });
    expect(await platformEventsOf(t.pools().control(), tenant.id, 'billing.status_changed')).toHaveLength(1);
    const [entry] = await tenantAudit(tenant, 'billing.plan_changed');
    expect(entry).toMatchObject({ actorKind: 'user', actorId: adminId, targetType: 'tenant_billing', metadata: { reason: 'contract 2026-014 signed' } });
    expect(await tenantAudit(tenant, 'billing.status_changed')).toHaveLength(1);

    // The same again changes nothing and records nothing.
    expect((await put(admin, tenant.id, { plan: 'pro' })).status).toBe(200);
    expect(await platformEventsOf(t.pools().control(), tenant.id, 'billing.plan_changed')).toHaveLength(1);
  });

  it('validates: unknown plan 400 PLAN_NOT_FOUND, bad fields 400 naming them, unknown tenant 404, not an admin 403', async () => {
    const tenant = await createTenant(t, { tier: 'shared', plan: 'free' });
    const before = await billingRow(tenant.id);
    const cases: Array<[unknown, number, string, string | undefined]> = [
      [{ plan: 'platinum' }, 400, 'PLAN_NOT_FOUND', 'plan'],
      [{ plan: 'Not A Plan' }, 400, 'VALIDATION_FAILED', 'plan'],
      [{}, 400, 'VALIDATION_FAILED', 'plan'],
      [{ plan: 'pro', status: 'bankrupt' }, 400, 'VALIDATION_FAILED', 'status'],
      [{ plan: 'pro', reason: '' }, 400, 'VALIDATION_FAILED', 'reason'],
      [{ plan: 'pro', seats: 99 }, 400, 'VALIDATION_FAILED', 'seats'],
    ];
    for (const [body, status, code, field] of cases) {
      const res = await put(admin, tenant.id, body);
      expect({ body, status: res.status, code: res.body.code, field: res.body.field }).toEqual({ body, status, code, field });
    }
    const unknownPlan = await put(admin, tenant.id, { plan: 'platinum' });
    expect(unknownPlan.body.message).toContain('free, pro, enterprise');

    const missing = await put(admin, randomUUID(), { plan: 'pro' });
    expect(missing.status).toBe(404);
    expect(missing.body.code).toBe('TENANT_NOT_FOUND');
    expect((await put(admin, 'not-a-uuid', { plan: 'pro' })).status).toBe(400);

    const refused = await put(tenant.owner, tenant.id, { plan: 'enterprise' });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('PLATFORM_ADMIN_REQUIRED');
    expect((await tenant.owner.get(`/tenants/${tenant.id}/billing`)).status).toBe(403);

    expect(await billingRow(tenant.id)).toEqual(before);
    expect(await platformEventsOf(t.pools().control(), tenant.id, 'billing.plan_changed')).toHaveLength(0);
  });

  it("refuses a plan that does not include the tenant's tier with 403 PLAN_TIER_NOT_ALLOWED", async () => {
    const schema = await createTenant(t, { tier: 'schema', plan: 'pro' });
    const toFree = await put(admin, schema.id, { plan: 'free' });
    expect(toFree.status).toBe(403);
    expect(toFree.body).toMatchObject({ code: 'PLAN_TIER_NOT_ALLOWED', field: 'plan', message: expect.stringContaining('schema tier') });
    expect(await billingRow(schema.id)).toMatchObject({ plan_key: 'pro' });

    const dedicated = await createTenant(t, { tier: 'dedicated', plan: 'enterprise' });
    expect((await put(admin, dedicated.id, { plan: 'pro' })).body.code).toBe('PLAN_TIER_NOT_ALLOWED');
    expect((await put(admin, dedicated.id, { plan: 'enterprise', status: 'active' })).status).toBe(200);
  });

  it('allows a downgrade below current usage: seats used may exceed the new limit', async () => {
    const tenant = await createTenant(t, { tier: 'shared', plan: 'enterprise' });
    for (const role of ['member', 'member', 'viewer', 'admin'] as Role[]) await member(tenant, role);
    const res = await put(admin, tenant.id, { plan: 'free' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ plan: { key: 'free', limits: { seats: 3 } }, seatsUsed: 5 });
    // Reads keep working for everyone.
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/members`)).body.items).toHaveLength(5);
    expect((await admin.get(`/tenants/${tenant.id}/billing`)).body).toMatchObject({ plan: { key: 'free' }, seatsUsed: 5 });
  });

  it('sets past_due by hand, starting the grace period, and clears it when leaving past_due', async () => {
    const tenant = await createTenant(t, { tier: 'shared', plan: 'pro' });
    const res = await put(admin, tenant.id, { plan: 'pro', status: 'past_due', reason: 'wire transfer bounced' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'past_due', readOnly: false, pastDueSince: expect.any(String) });
    expect(new Date(res.body.readOnlySince).getTime() - new Date(res.body.pastDueSince).getTime()).toBe(GRACE_DAYS * 86_400_000);
    const again = await put(admin, tenant.id, { plan: 'enterprise', status: 'past_due' });
    expect(again.body.pastDueSince).toBe(res.body.pastDueSince);
    const settled = await put(admin, tenant.id, { plan: 'enterprise', status: 'active' });
    expect(settled.body).toMatchObject({ status: 'active', pastDueSince: null, readOnlySince: null });
    expect(await billingRow(tenant.id)).toMatchObject({ status: 'active', past_due_since: null });
  });
});

describe('past due → read-only → paid, end to end', () => {
  it('keeps writing during the grace period, is read-only (402, reads and data intact) after it, and writes again once paid', async () => {
    const tenant = await createTenant(t, { tier: 'shared', plan: 'pro' });
    const orgs = `/orgs/${tenant.slug}`;
    const created = await tenant.owner.post(`${orgs}/projects`, { name: 'before trouble' });
    expect(created.status).toBe(201);
    const base = Math.floor(Date.now() / 1000) - 600;

    await stripe('customer.subscription.created', subscription(tenant.id, 'active', 'pro'), base);
    await stripe(
      'invoice.payment_failed',
      {
        id: 'in_1',
        object: 'invoice',
        customer: stripeIds(tenant.id).customer,
        parent: { type: 'subscription_details', subscription_details: { subscription: stripeIds(tenant.id).subscription, metadata: { tenant_id: tenant.id } } },
      },
      base + 60,
    );
    expect(await billingRow(tenant.id)).toMatchObject({ status: 'past_due' });

    // Within the grace period: still writable, and told when that ends.
    const during = await tenant.owner.get(`${orgs}/billing`);
    expect(during.body).toMatchObject({ status: 'past_due', readOnly: false, readOnlySince: expect.any(String) });
    expect((await tenant.owner.post(`${orgs}/projects`, { name: 'during grace' })).status).toBe(201);

    // The grace period runs out (moved back, as a superuser would; the trigger's NOTIFY reaches the app).
    await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) =>
      c.query(`UPDATE control.organization_billing SET past_due_since = now() - make_interval(days => $2) WHERE tenant_id = $1`, [tenant.id, GRACE_DAYS + 1]),
    );
    await eventually(async () => (await tenant.owner.get(`${orgs}/billing`)).body.readOnly === true, 'read-only');

    const refused = await tenant.owner.post(`${orgs}/projects`, { name: 'while unpaid' });
    expect(refused.status).toBe(402);
    expect(refused.body).toMatchObject({ status: 402, code: 'PAYMENT_REQUIRED' });
    expect(refused.body.message).toContain('read-only because its payment is past due');
    expect(refused.body.message).toContain('no data is lost');
    const list = await tenant.owner.get(`${orgs}/projects`);
    expect(list.status).toBe(200);
    expect(list.body.items.map((p: { name: string }) => p.name).sort()).toEqual(['before trouble', 'during grace']);
    expect((await tenant.owner.get(`${orgs}/projects/${created.body.id}`)).status).toBe(200);
    expect((await tenant.owner.patch(`${orgs}/projects/${created.body.id}`, { name: 'renamed' })).status).toBe(402);
    const billing = await tenant.owner.get(`${orgs}/billing`);
    expect(billing.status).toBe(200);
    expect(billing.body).toMatchObject({ status: 'past_due', readOnly: true });

    // Paid: Stripe reports the subscription active again; this instance sees it at once.
    await stripe('customer.subscription.updated', subscription(tenant.id, 'active', 'pro'), base + 120);
    expect(await billingRow(tenant.id)).toMatchObject({ status: 'active', past_due_since: null });
    expect((await tenant.owner.post(`${orgs}/projects`, { name: 'paid again' })).status).toBe(201);
    expect((await tenant.owner.get(`${orgs}/billing`)).body).toMatchObject({ status: 'active', readOnly: false, readOnlySince: null, pastDueSince: null });

    const statusChanges = (await tenantAudit(tenant, 'billing.status_changed')).map((e) => e.metadata.changes.status).reverse();
    expect(statusChanges).toEqual([
      { from: 'trialing', to: 'active' },
      { from: 'active', to: 'past_due' },
      { from: 'past_due', to: 'active' },
    ]);
    const platform = await platformEventsOf(t.pools().control(), tenant.id, 'billing.status_changed');
    expect(platform.map((e) => (e.metadata.changes as { status: unknown }).status)).toEqual(statusChanges);
  });

  it('a trial that ended unpaid is read-only after the grace period, until a platform admin (or a subscription) settles it', async () => {
    const tenant = await createTenant(t, { tier: 'shared', plan: 'free' });
    const orgs = `/orgs/${tenant.slug}`;
    await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) =>
      c.query(`UPDATE control.organization_billing SET trial_ends_at = now() - make_interval(days => $2) WHERE tenant_id = $1`, [tenant.id, GRACE_DAYS + 1]),
    );
    await eventually(async () => (await tenant.owner.get(`${orgs}/billing`)).body.readOnly === true, 'read-only');
    const refused = await tenant.owner.post(`${orgs}/projects`, { name: 'after the trial' });
    expect(refused.status).toBe(402);
    expect(refused.body.message).toContain('its trial ended without a subscription');
    expect((await put(admin, tenant.id, { plan: 'free', status: 'active' })).status).toBe(200);
    expect((await tenant.owner.post(`${orgs}/projects`, { name: 'after the trial' })).status).toBe(201);
  });
});

describe('the billing CLI', () => {
  let env: Record<string, string>;
  beforeAll(() => {
    env = cliEnv(t.harness, t.database, t.config.auth.jwtSecret!, { STRIPE_WEBHOOK_SECRET: SECRET });
  });
  const cli = (...args: string[]): Promise<CliRun> => runCli({ cwd, env }, ...args);

  it('lists the plans, shows a tenant and sets its plan as the OS user, in both audit logs', async () => {
    const plans = await cli('plans', 'list');
    expect(plans.code).toBe(0);
    const rows = tableRows(plans.stdout);
    expect(rows[0]).toEqual(['plan', 'name', 'seats', 'projects', 'tasks/project', 'requests/min', 'statement timeout ms', 'concurrent', 'tiers']);
    expect(rows.slice(1).map((r) => [r[0], r[2], r[8]])).toEqual([
      ['free', '3', 'shared'],
      ['pro', '25', 'shared, schema'],
      ['enterprise', 'unlimited', 'shared, schema, dedicated'],
    ]);

    const tenant = await createTenant(t, { tier: 'shared', plan: 'free' });
    const shown = await cli('billing', 'show', tenant.slug);
    expect(shown.code).toBe(0);
    const fields = Object.fromEntries(tableRows(shown.stdout).slice(1).map(([k, v]) => [k, v]));
    expect(fields).toMatchObject({ plan: 'free (Free)', status: 'trialing', 'read-only': expect.stringMatching(/^from /) });

    const set = await cli('billing', 'set-plan', tenant.slug, 'pro', '--reason', 'upsell call');
    expect(set.code).toBe(0);
    expect(set.stderr).toContain(`tenant '${tenant.slug}' is on the pro plan`);
    expect(await billingRow(tenant.id)).toMatchObject({ plan_key: 'pro' });
    const [event] = await platformEventsOf(t.pools().control(), tenant.id, 'billing.plan_changed');
    expect(event).toMatchObject({ actorKind: 'operator', metadata: { reason: 'upsell call', changes: { planKey: { from: 'free', to: 'pro' } } } });
    const [entry] = await tenantAudit(tenant, 'billing.plan_changed');
    expect(entry.actorId).toMatch(/^operator:/);
    // The running app heard the change (NOTIFY).
    await eventually(async () => (await tenant.owner.get(`/orgs/${tenant.slug}/billing`)).body.plan.key === 'pro', 'on pro');
  });

  it('fails with exit code 1 and the code for an unknown plan, tenant or a tier the plan lacks; 2 for bad usage', async () => {
    const tenant = await createTenant(t, { tier: 'schema', plan: 'pro' });
    const unknownPlan = await cli('billing', 'set-plan', tenant.slug, 'platinum');
    expect(unknownPlan.code).toBe(1);
    expect(unknownPlan.stderr).toContain('PLAN_NOT_FOUND');
    const tier = await cli('billing', 'set-plan', tenant.slug, 'free');
    expect(tier.code).toBe(1);
    expect(tier.stderr).toContain('PLAN_TIER_NOT_ALLOWED');
    const noTenant = await cli('billing', 'show', uniqueSlug('nope'));
    expect(noTenant.code).toBe(1);
    expect(noTenant.stderr).toContain('TENANT_NOT_FOUND');
    expect((await cli('billing', 'set-plan', 'Not_A_Slug', 'pro')).code).toBe(2);
    expect((await cli('billing', 'set-plan', tenant.slug)).code).toBe(2);
    expect(await billingRow(tenant.id)).toMatchObject({ plan_key: 'pro' });
  });
});
