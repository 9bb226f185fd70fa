import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import Stripe from 'stripe';
import { platformEventsOf } from '../../src/lifecycle/platform-audit.js';
import type { Tier } from '../../src/tenancy/tenant-route.js';
import { createTenant, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * POST /webhooks/stripe against real PostgreSQL: events verified with the official SDK (signed
 * here with the SDK's own test helper), stored once by id with their effect, refused whole when
 * forged, stale, altered or incomplete, ignored when out of order or for no known tenant.
 */
const SECRET = `whsec_${randomBytes(24).toString('hex')}`;
const TOLERANCE_SECONDS = 300;

let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ env: { STRIPE_WEBHOOK_SECRET: SECRET, STRIPE_WEBHOOK_TOLERANCE_SECONDS: String(TOLERANCE_SECONDS), LIFECYCLE_SWEEP_INTERVAL_MS: '0' } });
});
afterAll(async () => {
  await t?.close();
});

const owner = <T = Record<string, any>>(sql: string, params: unknown[] = []) => t.ownerQuery<T>(sql, params);

const nowSeconds = () => Math.floor(Date.now() / 1000);
const rid = (prefix: string) => `${prefix}_${randomBytes(10).toString('hex')}`;

interface SubscriptionSpec {
  id?: string;
  customer?: string;
  status: string;
  plan?: string | null;
  quantity?: number;
  tenantId?: string | null;
  periodEnd?: number;
  trialEnd?: number | null;
  metadata?: Record<string, string>;
}

/** A subscription as Stripe sends it (API version of the installed SDK: the period is on the items). */
function subscription(s: SubscriptionSpec): Record<string, unknown> {
  return {
    id: s.id ?? rid('sub'),
    object: 'subscription',
    customer: s.customer ?? rid('cus'),
    status: s.status,
    cancel_at_period_end: false,
    created: nowSeconds() - 3600,
    trial_end: s.trialEnd ?? null,
    metadata: { ...(s.tenantId ? { tenant_id: s.tenantId } : {}), ...s.metadata },
    items: {
      object: 'list',
      data: [
        {
          id: rid('si'),
          object: 'subscription_item',
          quantity: s.quantity ?? 1,
          current_period_start: nowSeconds() - 3600,
          current_period_end: s.periodEnd ?? nowSeconds() + 30 * 86_400,
          price: { id: rid('price'), object: 'price', lookup_key: s.plan === undefined ? 'pro' : s.plan, metadata: {} },
          metadata: {},
        },
      ],
    },
  };
}

function invoice(opts: { customer: string; subscription?: string; tenantId?: string }): Record<string, unknown> {
  return {
    id: rid('in'),
    object: 'invoice',
    customer: opts.customer,
    status: 'open',
    attempt_count: 1,
    metadata: {},
    parent: opts.subscription
      ? { type: 'subscription_details', quote_details: null, subscription_details: { subscription: opts.subscription, metadata: opts.tenantId ? { tenant_id: opts.tenantId } : {} } }
      : null,
  };
}

function event(type: string, object: Record<string, unknown>, created = nowSeconds()): Record<string, any> {
  return { id: rid('evt'), object: 'event', api_version: '2026-10-28.endive', created, livemode: false, pending_webhooks: 1, request: { id: null, idempotency_key: null }, type, data: { object } };
}

function sign(payload: string, opts: { secret?: string; timestamp?: number } = {}): string {
  return Stripe.webhooks.generateTestHeaderString({ payload, secret: opts.secret ?? SECRET, timestamp: opts.timestamp });
}

/** Posts a body (an event, or any string) as Stripe does; signed with the secret unless a signature (or null: none) is given. */
async function deliver(body: Record<string, unknown> | string, signature?: string | null) {
  const payload = typeof body === 'string' ? body : JSON.stringify(body);
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' };
  const sig = signature === undefined ? sign(payload) : signature;
  if (sig !== null) headers['stripe-signature'] = sig;
  return t.http.withHeaders(headers).request('POST', '/webhooks/stripe', payload);
}

async function billingRow(tenantId: string): Promise<Record<string, any>> {
  const [row] = await owner('SELECT * FROM control.organization_billing WHERE tenant_id = $1', [tenantId]);
  return row;
}

async function eventRow(id: string): Promise<Record<string, any> | undefined> {
  const [row] = await owner('SELECT * FROM control.billing_events WHERE id = $1', [id]);
  return row;
}

/** Everything a webhook could change. */
async function snapshot() {
  return {
    billing: await owner('SELECT * FROM control.organization_billing ORDER BY tenant_id'),
    events: await owner('SELECT * FROM control.billing_events ORDER BY id'),
    platformAudit: await owner(`SELECT id FROM control.platform_audit_log WHERE action LIKE 'billing.%' ORDER BY id`),
    outbox: await owner('SELECT id FROM control.audit_outbox ORDER BY id'),
  };
}

async function tenantAudit(tenant: TenantFixture, action: string): Promise<Array<Record<string, any>>> {
  const res = await tenant.owner.get(`/orgs/${tenant.slug}/audit?action=${action}`);
  expect(res.status).toBe(200);
  return res.body.items;
}

async function tenantOn(plan: string, tier: Tier = 'shared'): Promise<TenantFixture> {
  return createTenant(t, { tier, plan });
}

describe('a valid event', () => {
  it('is applied once: plan, status, seats, period, customer and subscription ids, in both audit logs', async () => {
    const tenant = await tenantOn('free');
    expect(await billingRow(tenant.id)).toMatchObject({ plan_key: 'free', status: 'trialing', provider_customer_id: null });
    const periodEnd = nowSeconds() + 31 * 86_400;
    const sub = subscription({ status: 'active', plan: 'pro', quantity: 7, tenantId: tenant.id, periodEnd });
    const created = event('customer.subscription.created', sub);

    const res = await deliver(created);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ received: true, id: created.id, duplicate: false, outcome: 'applied' });

    const row = await billingRow(tenant.id);
    expect(row).toMatchObject({
      plan_key: 'pro',
      status: 'active',
      seats: 7,
      past_due_since: null,
      trial_ends_at: null,
      provider_customer_id: sub.customer,
      provider_subscription_id: sub.id,
    });
    expect((row.current_period_end as Date).getTime()).toBe(periodEnd * 1000);
    expect((row.provider_event_at as Date).getTime()).toBe(created.created * 1000);
    expect(await eventRow(created.id)).toMatchObject({ type: 'customer.subscription.created', tenant_id: tenant.id, outcome: 'applied', provider: 'stripe' });

    const platform = await platformEventsOf(t.pools().control(), tenant.id);
    const billingEvents = platform.filter((e) => e.action.startsWith('billing.'));
    expect(billingEvents.map((e) => e.action).sort()).toEqual(['billing.plan_changed', 'billing.status_changed']);
    for (const e of billingEvents) {
      expect(e).toMatchObject({ actorKind: 'system', actorId: 'stripe-webhook', targetType: 'tenant_billing', targetId: tenant.id });
      expect(e.metadata).toMatchObject({ stripeEvent: { id: created.id, type: 'customer.subscription.created' }, changes: { planKey: { from: 'free', to: 'pro' } } });
    }
    const [planChanged] = await tenantAudit(tenant, 'billing.plan_changed');
    expect(planChanged).toMatchObject({ actorKind: 'system', actorId: 'stripe-webhook', metadata: { changes: { planKey: { from: 'free', to: 'pro' }, seats: { from: null, to: 7 } } } });
    expect(await tenantAudit(tenant, 'billing.status_changed')).toHaveLength(1);

    // The tenant's owners see it at once.
    const seen = await tenant.owner.get(`/orgs/${tenant.slug}/billing`);
    expect(seen.status).toBe(200);
    expect(seen.body).toMatchObject({ plan: { key: 'pro' }, status: 'active', seatsPurchased: 7, providerSubscriptionId: sub.id, readOnly: false });
  });

  it('delivered again (a retry, or a replay within the tolerance) answers duplicate and changes nothing', async () => {
    const tenant = await tenantOn('free');
    const created = event('customer.subscription.created', subscription({ status: 'active', plan: 'pro', quantity: 2, tenantId: tenant.id }));
    const payload = JSON.stringify(created);
    const header = sign(payload);
    expect((await deliver(payload, header)).body).toMatchObject({ duplicate: false, outcome: 'applied' });
    const before = await snapshot();

    const replayed = await deliver(payload, header);
    expect(replayed.status).toBe(200);
    expect(replayed.body).toEqual({ received: true, id: created.id, duplicate: true, outcome: 'applied' });
    const retried = await deliver(payload);
    expect(retried.body).toMatchObject({ duplicate: true });
    // Even a later copy with a different body changes nothing: the id is what counts.
    const altered = { ...created, data: { object: subscription({ status: 'past_due', plan: 'enterprise', tenantId: tenant.id }) } };
    expect((await deliver(altered)).body).toMatchObject({ duplicate: true, outcome: 'applied' });

    expect(await snapshot()).toEqual(before);
    expect(await tenantAudit(tenant, 'billing.plan_changed')).toHaveLength(1);
  });

  it('delivered concurrently is stored and applied once', async () => {
    const tenant = await tenantOn('free');
    const created = event('customer.subscription.created', subscription({ status: 'active', plan: 'pro', tenantId: tenant.id }));
    const payload = JSON.stringify(created);
    const answers = await Promise.all(Array.from({ length: 5 }, () => deliver(payload)));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    expect(answers.filter((a) => a.body.duplicate === false)).toHaveLength(1);
    expect(await owner('SELECT id FROM control.billing_events WHERE id = $1', [created.id])).toHaveLength(1);
    expect(await tenantAudit(tenant, 'billing.plan_changed')).toHaveLength(1);
  });
});

describe('refused deliveries', () => {
  it('forged, wrong secret, stale, altered, unsigned, malformed or incomplete: 400 and nothing stored or changed', async () => {
    const tenant = await tenantOn('free');
    const good = event('customer.subscription.created', subscription({ status: 'active', plan: 'pro', quantity: 3, tenantId: tenant.id }));
    const payload = JSON.stringify(good);
    const before = await snapshot();

    const refusals = {
      wrongSecret: await deliver(payload, sign(payload, { secret: `whsec_${randomBytes(24).toString('hex')}` })),
      forged: await deliver(payload, `t=${nowSeconds()},v1=${randomBytes(32).toString('hex')}`),
      garbage: await deliver(payload, 'not a signature'),
      stale: await deliver(payload, sign(payload, { timestamp: nowSeconds() - TOLERANCE_SECONDS - 60 })),
      altered: await deliver(payload.replace('"quantity":3', '"quantity":300'), sign(payload)),
      unsigned: await deliver(payload, null),
    };
    for (const [name, r] of Object.entries(refusals)) {
      expect({ name, status: r.status, code: r.body.code }).toEqual({ name, status: 400, code: 'BILLING_WEBHOOK_INVALID' });
      expect(r.body).toMatchObject({ field: 'Stripe-Signature', message: expect.stringContaining('the Stripe webhook is refused') });
    }

    // Signed, but not what an event needs.
    const notAnEvent = await deliver(JSON.stringify({ hello: 'world' }));
    expect(notAnEvent.body).toMatchObject({ status: 400, code: 'BILLING_WEBHOOK_INVALID', field: 'id' });
    const noCustomer = event('customer.subscription.updated', { ...subscription({ status: 'active', tenantId: tenant.id }), customer: null });
    expect((await deliver(noCustomer)).body).toMatchObject({ status: 400, code: 'BILLING_WEBHOOK_INVALID', field: 'data.object.customer' });
    const noObject = { ...event('invoice.payment_failed', {}), data: {} };
    expect((await deliver(noObject)).body).toMatchObject({ status: 400, code: 'BILLING_WEBHOOK_INVALID', field: 'data.object' });
    const noCreated = { ...event('customer.subscription.updated', subscription({ status: 'active', tenantId: tenant.id })), created: 'yesterday' };
    expect((await deliver(noCreated)).body).toMatchObject({ status: 400, code: 'BILLING_WEBHOOK_INVALID', field: 'created' });
    // Not JSON at all: the framework's JSON parser refuses it before the signature is looked at.
    const malformed = '{"id": "evt_malformed", "type": ';
    const notJson = await deliver(malformed);
    expect(notJson.status).toBe(400);
    expect(notJson.body).toMatchObject({ status: 400, code: 'MALFORMED_BODY' });
    const empty = await deliver('', sign(''));
    expect(empty.status).toBe(400);

    expect(await snapshot()).toEqual(before);
    expect(await eventRow(good.id)).toBeUndefined();

    // The genuine delivery of the same event is accepted.
    expect((await deliver(payload)).body).toMatchObject({ duplicate: false, outcome: 'applied' });
    expect(await billingRow(tenant.id)).toMatchObject({ plan_key: 'pro', seats: 3 });
  });

  it('values PostgreSQL could not store (a NUL, seats past an integer, dates out of range or from the future): 400, never a 500, nothing changed', async () => {
    const tenant = await tenantOn('free');
    const before = await snapshot();
    const ok = { status: 'active', plan: 'pro', tenantId: tenant.id } as const;
    const bodies: Array<Record<string, unknown>> = [
      event('customer.subscription.updated\u0000x', subscription(ok)),
      event('customer.subscription.updated', subscription({ ...ok, metadata: { plan: 'gold\u0000' } })),
      event('customer.subscription.updated', subscription(ok), nowSeconds() + 10 * 365 * 86_400),
    ];
    for (const body of bodies) {
      const res = await deliver(body);
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ code: 'BILLING_WEBHOOK_INVALID' });
    }
    expect(await snapshot()).toEqual(before);
    // Out-of-range numbers are not taken as values: no 500, and none of them is stored.
    const res = await deliver(event('customer.subscription.updated', subscription({ ...ok, quantity: 2 ** 31, periodEnd: 1e15 })));
    expect(res.status).toBe(200);
    expect(await billingRow(tenant.id)).toMatchObject({ plan_key: 'pro', seats: null, current_period_end: null });
  });

  it('503 BILLING_NOT_CONFIGURED, storing nothing, while STRIPE_WEBHOOK_SECRET is unset', async () => {
    const unconfigured = await startTestApp({ database: t.database, env: { JWT_SECRET: t.config.auth.jwtSecret!, LIFECYCLE_SWEEP_INTERVAL_MS: '0' } });
    try {
      const tenant = await tenantOn('free');
      const e = event('customer.subscription.created', subscription({ status: 'active', tenantId: tenant.id }));
      const payload = JSON.stringify(e);
      const res = await unconfigured.http.withHeaders({ 'content-type': 'application/json', 'stripe-signature': sign(payload) }).request('POST', '/webhooks/stripe', payload);
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ code: 'BILLING_NOT_CONFIGURED', message: expect.stringContaining('STRIPE_WEBHOOK_SECRET') });
      expect(await eventRow(e.id)).toBeUndefined();
      expect(await billingRow(tenant.id)).toMatchObject({ plan_key: 'free', status: 'trialing' });
    } finally {
      await unconfigured.close();
    }
  });
});

describe('ignored events', () => {
  it('an event older than the last one applied (out of order) is stored as ignored and changes nothing', async () => {
    const tenant = await tenantOn('free');
    const sub = subscription({ status: 'active', plan: 'pro', quantity: 5, tenantId: tenant.id });
    const newer = event('customer.subscription.updated', sub, nowSeconds());
    expect((await deliver(newer)).body).toMatchObject({ outcome: 'applied' });
    const before = await billingRow(tenant.id);

    const older = event('customer.subscription.updated', { ...subscription({ status: 'past_due', plan: 'free', quantity: 1, tenantId: tenant.id }), id: sub.id, customer: sub.customer }, newer.created - 60);
    const res = await deliver(older);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ received: true, id: older.id, duplicate: false, outcome: 'ignored' });
    expect(await billingRow(tenant.id)).toEqual(before);
    expect(await eventRow(older.id)).toMatchObject({ outcome: 'ignored', tenant_id: tenant.id, detail: expect.stringContaining('out of order') });
  });

  it('an event for no known tenant is stored as ignored, without a tenant', async () => {
    const before = (await snapshot()).billing;
    const stray = event('customer.subscription.created', subscription({ status: 'active', plan: 'pro', tenantId: randomUUID() }));
    const res = await deliver(stray);
    expect(res.body).toEqual({ received: true, id: stray.id, duplicate: false, outcome: 'ignored' });
    expect(await eventRow(stray.id)).toMatchObject({ tenant_id: null, outcome: 'ignored', detail: expect.stringContaining('no tenant') });
    // A tenant id that is not a UUID is no tenant either.
    const odd = event('customer.subscription.created', subscription({ status: 'active', plan: 'pro', metadata: { tenant_id: "1' OR '1'='1" } }));
    expect((await deliver(odd)).body).toMatchObject({ outcome: 'ignored' });
    expect((await snapshot()).billing).toEqual(before);
  });

  it('a customer already held by another tenant is not moved over: ignored, naming that tenant', async () => {
    const first = await tenantOn('free');
    const second = await tenantOn('free');
    const sub = subscription({ status: 'active', plan: 'pro', tenantId: first.id });
    await deliver(event('customer.subscription.created', sub));
    const before = await billingRow(second.id);
    const clash = event('customer.subscription.created', subscription({ status: 'active', plan: 'enterprise', tenantId: second.id, customer: sub.customer as string }));
    expect((await deliver(clash)).body).toMatchObject({ outcome: 'ignored' });
    expect(await eventRow(clash.id)).toMatchObject({ tenant_id: second.id, detail: expect.stringContaining(first.id) });
    expect(await billingRow(second.id)).toEqual(before);
    expect(await billingRow(first.id)).toMatchObject({ plan_key: 'pro', provider_customer_id: sub.customer });
  });

  it('a type not acted on is stored as ignored and answered 200', async () => {
    const e = event('invoice.paid', invoice({ customer: rid('cus') }));
    const res = await deliver(e);
    expect(res.body).toEqual({ received: true, id: e.id, duplicate: false, outcome: 'ignored' });
    expect(await eventRow(e.id)).toMatchObject({ type: 'invoice.paid', outcome: 'ignored', tenant_id: null });
  });

  it('incomplete subscriptions leave the tenant as it is', async () => {
    const tenant = await tenantOn('free');
    const before = await billingRow(tenant.id);
    for (const status of ['incomplete', 'incomplete_expired']) {
      const e = event('customer.subscription.created', subscription({ status, plan: 'pro', tenantId: tenant.id }));
      expect((await deliver(e)).body).toMatchObject({ outcome: 'ignored' });
      expect(await eventRow(e.id)).toMatchObject({ tenant_id: tenant.id, detail: expect.stringContaining('never started') });
    }
    expect(await billingRow(tenant.id)).toEqual(before);
  });
});

describe('what events do', () => {
  it('finds the tenant by its customer id when the metadata says nothing', async () => {
    const tenant = await tenantOn('free');
    const sub = subscription({ status: 'active', plan: 'pro', quantity: 2, tenantId: tenant.id });
    await deliver(event('customer.subscription.created', sub));
    const update = event('customer.subscription.updated', { ...subscription({ status: 'active', plan: 'enterprise', quantity: 9 }), id: sub.id, customer: sub.customer });
    expect((await deliver(update)).body).toMatchObject({ outcome: 'applied' });
    expect(await billingRow(tenant.id)).toMatchObject({ plan_key: 'enterprise', seats: 9 });
  });

  it('takes the plan from metadata.plan when the price has no lookup_key', async () => {
    const tenant = await tenantOn('free');
    const e = event('customer.subscription.created', subscription({ status: 'active', plan: null, metadata: { plan: 'enterprise' }, tenantId: tenant.id }));
    expect((await deliver(e)).body).toMatchObject({ outcome: 'applied' });
    expect(await billingRow(tenant.id)).toMatchObject({ plan_key: 'enterprise', status: 'active' });
  });

  it('invoice.payment_failed makes the tenant past due, keeping past_due_since on a second failure; paying clears it', async () => {
    const tenant = await tenantOn('pro');
    const sub = subscription({ status: 'active', plan: 'pro', tenantId: tenant.id });
    const t0 = nowSeconds() - 600;
    await deliver(event('customer.subscription.created', sub, t0));

    const failed = event('invoice.payment_failed', invoice({ customer: sub.customer as string, subscription: sub.id as string, tenantId: tenant.id }), t0 + 60);
    expect((await deliver(failed)).body).toMatchObject({ outcome: 'applied' });
    let row = await billingRow(tenant.id);
    expect(row).toMatchObject({ status: 'past_due', plan_key: 'pro' });
    expect((row.past_due_since as Date).getTime()).toBe((t0 + 60) * 1000);

    const again = event('invoice.payment_failed', invoice({ customer: sub.customer as string, subscription: sub.id as string }), t0 + 120);
    expect((await deliver(again)).body).toMatchObject({ outcome: 'applied' });
    row = await billingRow(tenant.id);
    expect((row.past_due_since as Date).getTime()).toBe((t0 + 60) * 1000);
    expect((await platformEventsOf(t.pools().control(), tenant.id, 'billing.status_changed')).map((e) => e.metadata.changes)).toEqual([
      { status: { from: 'trialing', to: 'active' }, providerCustomerId: expect.any(Object), providerSubscriptionId: expect.any(Object), currentPeriodEnd: expect.any(Object), seats: expect.any(Object), trialEndsAt: expect.any(Object) },
      { status: { from: 'active', to: 'past_due' }, pastDueSince: { from: null, to: new Date((t0 + 60) * 1000).toISOString() } },
    ]);

    const paid = event('customer.subscription.updated', { ...sub, status: 'active' }, t0 + 180);
    expect((await deliver(paid)).body).toMatchObject({ outcome: 'applied' });
    expect(await billingRow(tenant.id)).toMatchObject({ status: 'active', past_due_since: null });
  });

  it('maps unpaid and paused to past_due and trialing to trialing with its end', async () => {
    const tenant = await tenantOn('free');
    const sub = subscription({ status: 'trialing', plan: 'pro', tenantId: tenant.id, trialEnd: nowSeconds() + 5 * 86_400 });
    const base = nowSeconds() - 300;
    await deliver(event('customer.subscription.created', sub, base));
    let row = await billingRow(tenant.id);
    expect(row).toMatchObject({ status: 'trialing', plan_key: 'pro' });
    expect((row.trial_ends_at as Date).getTime()).toBe((sub.trial_end as number) * 1000);

    await deliver(event('customer.subscription.updated', { ...sub, status: 'unpaid' }, base + 10));
    row = await billingRow(tenant.id);
    expect(row.status).toBe('past_due');
    expect((row.past_due_since as Date).getTime()).toBe((base + 10) * 1000);
    await deliver(event('customer.subscription.updated', { ...sub, status: 'paused' }, base + 20));
    expect(await billingRow(tenant.id)).toMatchObject({ status: 'past_due', past_due_since: row.past_due_since });
  });

  it('a plan that does not include the tenant tier is not applied; the rest is', async () => {
    const tenant = await tenantOn('pro', 'schema');
    const e = event('customer.subscription.created', subscription({ status: 'active', plan: 'free', quantity: 4, tenantId: tenant.id }));
    expect((await deliver(e)).body).toMatchObject({ outcome: 'applied' });
    expect(await billingRow(tenant.id)).toMatchObject({ plan_key: 'pro', status: 'active', seats: 4 });
    expect(await eventRow(e.id)).toMatchObject({ detail: expect.stringContaining('does not include the schema tier') });
  });

  it.each<[Tier, string, string]>([
    ['shared', 'pro', 'free'],
    ['schema', 'enterprise', 'pro'],
  ])('a deleted subscription cancels a %s tenant on %s and puts it on the cheapest plan of its tier (%s), not read-only', async (tier, plan, cheapest) => {
    const tenant = await tenantOn(plan, tier);
    const sub = subscription({ status: 'active', plan, tenantId: tenant.id });
    const base = nowSeconds() - 120;
    await deliver(event('customer.subscription.created', sub, base));
    const deleted = event('customer.subscription.deleted', { ...sub, status: 'canceled' }, base + 60);
    expect((await deliver(deleted)).body).toMatchObject({ outcome: 'applied' });
    expect(await billingRow(tenant.id)).toMatchObject({ status: 'canceled', plan_key: cheapest, past_due_since: null, provider_subscription_id: sub.id });
    const seen = await tenant.owner.get(`/orgs/${tenant.slug}/billing`);
    expect(seen.body).toMatchObject({ status: 'canceled', plan: { key: cheapest }, readOnly: false, readOnlySince: null });
    expect((await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: 'after cancellation' })).status).toBe(201);
    expect(await tenantAudit(tenant, 'billing.plan_changed')).toHaveLength(1);
  });

  it('a late deletion of a subscription the tenant has since replaced changes nothing', async () => {
    const tenant = await tenantOn('free');
    const first = subscription({ status: 'active', plan: 'pro', tenantId: tenant.id });
    const base = nowSeconds() - 300;
    await deliver(event('customer.subscription.created', first, base));
    const second = { ...subscription({ status: 'active', plan: 'enterprise', tenantId: tenant.id }), customer: first.customer };
    await deliver(event('customer.subscription.created', second, base + 10));
    const before = await billingRow(tenant.id);
    const late = event('customer.subscription.deleted', { ...first, status: 'canceled' }, base + 20);
    expect((await deliver(late)).body).toMatchObject({ outcome: 'ignored' });
    expect(await billingRow(tenant.id)).toEqual(before);
  });
});
