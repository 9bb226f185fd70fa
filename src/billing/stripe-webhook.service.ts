import { Injectable, Logger } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import Stripe from 'stripe';
import type { AppConfig } from '../../config/configuration.js';
import { isUuid } from '../../libs/postgres/index.js';
import type { Actor } from '../lifecycle/actor.js';
import type { Queryable } from '../tenancy/tenant-directory.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import { BillingError } from './billing.errors.js';
import { BillingChange, BillingService, LockedBilling } from './billing.service.js';
import { type BillingStatus, type Plan, tierFeature } from './features.js';

export interface StripeReceipt {
  id: string;
  duplicate: boolean;
  outcome: 'applied' | 'ignored';
}

/** What the platform audit log names as the author of a webhook's change. */
const STRIPE_ACTOR: Actor = { kind: 'system', id: 'stripe-webhook' };

const HANDLED = ['customer.subscription.created', 'customer.subscription.updated', 'customer.subscription.deleted', 'invoice.payment_failed'] as const;
type Handled = (typeof HANDLED)[number];

/**
 * Stripe subscription statuses in ours. incomplete: the first payment has not gone through yet
 * (Stripe gives it 23 hours), and incomplete_expired: it never did; neither ever started the
 * subscription, so the tenant keeps what it has (the event is stored as ignored). unpaid and
 * paused (a trial that ended without a payment method) count as unpaid: past_due, so the grace
 * period runs and then the tenant is read-only until paid. canceled: see canceledChange().
 */
const STATUS_MAP: Record<string, BillingStatus | 'canceled' | null> = {
  trialing: 'trialing',
  active: 'active',
  past_due: 'past_due',
  unpaid: 'past_due',
  paused: 'past_due',
  canceled: 'canceled',
  incomplete: null,
  incomplete_expired: null,
};

/** The parts of a Stripe event this endpoint reads, checked. */
interface ParsedEvent {
  id: string;
  type: string;
  created: Date;
  object: Record<string, unknown>;
}

/** What a subscription or invoice says about who pays for what. */
interface Facts {
  tenantId?: string;
  customerId: string;
  subscriptionId?: string;
}

interface SubscriptionFacts extends Facts {
  subscriptionId: string;
  status: string;
  planKeys: string[];
  seats?: number;
  currentPeriodEnd?: Date;
  trialEnd: Date | null;
}

interface Decision {
  tenantId: string | null;
  outcome: 'applied' | 'ignored';
  detail: string;
  apply?: { locked: LockedBilling; change: BillingChange };
}

class Duplicate extends Error {}

const invalid = (why: string, field?: string) => new BillingError('BILLING_WEBHOOK_INVALID', `the Stripe webhook is refused: ${why}`, field);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const idOf = (v: unknown): string | undefined => (typeof v === 'string' ? v : isObject(v) && typeof v.id === 'string' ? v.id : undefined);
const PROVIDER_ID = /^[\x21-\x7e]{1,255}$/;
/** Unix seconds as a date PostgreSQL can store (1970 to 9999); anything else is no date. */
const at = (seconds: unknown): Date | undefined =>
  typeof seconds === 'number' && Number.isFinite(seconds) && seconds >= 0 && seconds <= 253_402_300_799 ? new Date(seconds * 1000) : undefined;
const MAX_SEATS = 2_147_483_647;
const tenantIdIn = (metadata: unknown): string | undefined => {
  const v = isObject(metadata) ? metadata.tenant_id : undefined;
  return typeof v === 'string' && isUuid(v) ? v.toLowerCase() : undefined;
};

function parseEvent(raw: unknown): ParsedEvent {
  if (!isObject(raw)) throw invalid('the body is not a Stripe event object');
  // PostgreSQL text cannot hold NUL: refused here rather than failing at the insert.
  if (JSON.stringify(raw).includes('\\u0000')) throw invalid('the event contains a NUL character');
  if (typeof raw.id !== 'string' || !PROVIDER_ID.test(raw.id)) throw invalid('the event needs an id (1-255 printable characters)', 'id');
  if (typeof raw.type !== 'string' || !raw.type || raw.type.length > 255) throw invalid('the event needs a type', 'type');
  const created = at(raw.created);
  if (!created || !Number.isInteger(raw.created)) throw invalid('the event needs its created time (Unix seconds)', 'created');
  // A created time from the future would make every later event look out of order.
  if (created.getTime() > Date.now() + 3_600_000) throw invalid('the event was created in the future', 'created');
  if (!isObject(raw.data) || !isObject(raw.data.object)) throw invalid('the event needs data.object', 'data.object');
  return { id: raw.id, type: raw.type, created, object: raw.data.object };
}

function subscriptionFacts(o: Record<string, unknown>): SubscriptionFacts {
  const id = o.id;
  const customerId = idOf(o.customer);
  if (o.object !== 'subscription' || typeof id !== 'string' || !PROVIDER_ID.test(id)) throw invalid('data.object must be a subscription with an id', 'data.object');
  if (!customerId || !PROVIDER_ID.test(customerId)) throw invalid('the subscription names no customer', 'data.object.customer');
  if (typeof o.status !== 'string') throw invalid('the subscription has no status', 'data.object.status');
  const items = isObject(o.items) && Array.isArray(o.items.data) ? o.items.data.filter(isObject) : [];
  const planKeys: string[] = [];
  let seats: number | undefined;
  let periodEnd: Date | undefined;
  for (const item of items) {
    const key = isObject(item.price) ? item.price.lookup_key : undefined;
    if (typeof key === 'string') planKeys.push(key);
    if (seats === undefined && typeof item.quantity === 'number' && Number.isInteger(item.quantity) && item.quantity >= 0 && item.quantity <= MAX_SEATS) seats = item.quantity;
    // Since API version 2025-03-31 the period is the items'; the latest one ends the subscription's.
    const end = at(item.current_period_end);
    if (end && (!periodEnd || end > periodEnd)) periodEnd = end;
  }
  const metadata = isObject(o.metadata) ? o.metadata : {};
  if (typeof metadata.plan === 'string') planKeys.push(metadata.plan);
  return {
    tenantId: tenantIdIn(metadata),
    customerId,
    subscriptionId: id,
    status: o.status,
    planKeys,
    seats,
    // Older API versions carry it on the subscription itself.
    currentPeriodEnd: periodEnd ?? at(o.current_period_end),
    trialEnd: at(o.trial_end) ?? null,
  };
}

function invoiceFacts(o: Record<string, unknown>): Facts {
  const customerId = idOf(o.customer);
  if (o.object !== 'invoice' || typeof o.id !== 'string') throw invalid('data.object must be an invoice with an id', 'data.object');
  if (!customerId || !PROVIDER_ID.test(customerId)) throw invalid('the invoice names no customer', 'data.object.customer');
  // Since API version 2025-03-31: parent.subscription_details; before: subscription and subscription_details.
  const parent = isObject(o.parent) && isObject(o.parent.subscription_details) ? o.parent.subscription_details : undefined;
  const legacy = isObject(o.subscription_details) ? o.subscription_details : undefined;
  const subscriptionId = idOf(parent?.subscription) ?? idOf(o.subscription);
  return {
    tenantId: tenantIdIn(parent?.metadata) ?? tenantIdIn(legacy?.metadata) ?? tenantIdIn(o.metadata),
    customerId,
    subscriptionId: subscriptionId && PROVIDER_ID.test(subscriptionId) ? subscriptionId : undefined,
  };
}

/**
 * Stripe's webhook endpoint: verified with the official SDK on the raw body (Stripe-Signature,
 * HMAC over the timestamp and the exact bytes, within STRIPE_WEBHOOK_TOLERANCE_SECONDS), then
 * each event is stored once by its id in control.billing_events, in the same transaction as its
 * effect on the tenant's billing row: a repeated delivery changes nothing. Stripe does not
 * promise order, so an event older than the last one applied to a tenant is stored as ignored.
 */
@Injectable()
export class StripeWebhookService {
  private readonly logger = new Logger(StripeWebhookService.name);
  private readonly secret?: string;
  private readonly toleranceSeconds: number;

  constructor(
    private readonly pools: TenantPools,
    private readonly billing: BillingService,
    config: ConfigService<AppConfig, true>,
  ) {
    const { webhookSecret, toleranceSeconds } = config.get('billing', { infer: true }).stripe;
    this.secret = webhookSecret;
    this.toleranceSeconds = toleranceSeconds;
  }

  async receive(rawBody: Buffer | undefined, signature: string | undefined): Promise<StripeReceipt> {
    if (!this.secret) {
      throw new BillingError('BILLING_NOT_CONFIGURED', 'Stripe webhooks are not configured on this platform (STRIPE_WEBHOOK_SECRET)', undefined, { 'retry-after': '3600' });
    }
    if (!signature) throw invalid('the Stripe-Signature header is missing', 'Stripe-Signature');
    if (!rawBody?.length) throw invalid('the body is empty or not JSON');
    let raw: unknown;
    try {
      raw = Stripe.webhooks.constructEvent(rawBody, signature, this.secret, this.toleranceSeconds);
    } catch (err) {
      // The SDK's reason (no match, timestamp outside the tolerance, unreadable header, not JSON)
      // names nothing secret.
      this.logger.warn({ reason: (err as Error).message }, 'Stripe webhook refused');
      throw invalid((err as Error).message || 'the signature does not verify', 'Stripe-Signature');
    }
    const event = parseEvent(raw);
    const handled = (HANDLED as readonly string[]).includes(event.type) ? (event.type as Handled) : undefined;
    // Checked before anything is stored: a handled event that lacks what it needs is refused whole.
    const facts = handled === 'invoice.payment_failed' ? invoiceFacts(event.object) : handled ? subscriptionFacts(event.object) : undefined;

    const stored = await this.storedOutcome(event.id);
    if (stored) return { id: event.id, duplicate: true, outcome: stored };
    let decision: Decision;
    try {
      decision = await this.pools.control().transaction(async (m) => {
        const d = handled && facts ? await this.decide(m, event, handled, facts) : { tenantId: null, outcome: 'ignored' as const, detail: `${event.type} is not acted on` };
        const inserted = await m.query<unknown[]>(
          `INSERT INTO control.billing_events (id, type, created_at, tenant_id, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (id) DO NOTHING RETURNING id`,
          [event.id, event.type, event.created, d.tenantId, d.outcome, d.detail.slice(0, 1000)],
        );
        // A concurrent delivery of the same event stored it first: this one changes nothing.
        if (!inserted.length) throw new Duplicate();
        if (d.apply) {
          await this.billing.apply(m, d.apply.locked, d.apply.change, { actor: STRIPE_ACTOR, event: { id: event.id, type: event.type } }, event.created);
        }
        return d;
      });
    } catch (err) {
      if (err instanceof Duplicate) return { id: event.id, duplicate: true, outcome: (await this.storedOutcome(event.id)) ?? 'ignored' };
      throw err;
    }
    if (decision.apply) await this.billing.committed(decision.apply.locked.tenantId);
    this.logger.log({ eventId: event.id, type: event.type, tenantId: decision.tenantId, outcome: decision.outcome, detail: decision.detail }, 'Stripe event stored');
    return { id: event.id, duplicate: false, outcome: decision.outcome };
  }

  private async storedOutcome(id: string): Promise<'applied' | 'ignored' | undefined> {
    const rows = await this.pools.control().query<Array<{ outcome: 'applied' | 'ignored' }>>('SELECT outcome FROM control.billing_events WHERE id = $1', [id]);
    return rows[0]?.outcome;
  }

  /** Finds and locks the tenant, and says what the event does to its billing row (if anything). */
  private async decide(m: Queryable, event: ParsedEvent, type: Handled, facts: Facts | SubscriptionFacts): Promise<Decision> {
    const tenantId = await this.tenantOf(m, facts);
    const ignored = (detail: string, tenant: string | null = tenantId): Decision => ({ tenantId: tenant, outcome: 'ignored', detail });
    if (!tenantId) {
      return ignored(`no tenant: neither metadata.tenant_id nor customer ${facts.customerId}${facts.subscriptionId ? ` or subscription ${facts.subscriptionId}` : ''} is known`);
    }
    const locked = await this.billing.lock(m, tenantId);
    if (!locked?.state) return ignored('the tenant has no billing row', locked ? tenantId : null);
    if (locked.providerEventAt && event.created < locked.providerEventAt) {
      return ignored(`older (${event.created.toISOString()}) than the last event applied (${locked.providerEventAt.toISOString()}): delivered out of order`);
    }
    const owner = await m.query<Array<{ tenant_id: string }>>(
      `SELECT tenant_id FROM control.organization_billing
        WHERE tenant_id <> $1 AND (provider_customer_id = $2 OR provider_subscription_id = $3) LIMIT 1`,
      [tenantId, facts.customerId, facts.subscriptionId ?? null],
    );
    if (owner.length) return ignored(`customer ${facts.customerId} or subscription ${facts.subscriptionId ?? '-'} belongs to tenant ${owner[0].tenant_id}`);
    const current = locked.state.providerSubscriptionId;
    const otherSubscription = current !== null && facts.subscriptionId !== undefined && facts.subscriptionId !== current;

    if (type === 'invoice.payment_failed') {
      if (!facts.subscriptionId) return ignored('not a subscription invoice');
      if (otherSubscription) return ignored(`the invoice is for subscription ${facts.subscriptionId}, not the tenant's ${current}`);
      if (locked.state.status === 'canceled') return ignored('the tenant has no running subscription (canceled)');
      return {
        tenantId,
        outcome: 'applied',
        detail: locked.state.status === 'past_due' ? 'payment failed again: still past due' : 'payment failed: past due',
        apply: {
          locked,
          change: { status: 'past_due', pastDueFrom: event.created, providerCustomerId: facts.customerId, providerSubscriptionId: facts.subscriptionId },
        },
      };
    }

    const sub = facts as SubscriptionFacts;
    const ours = type === 'customer.subscription.deleted' ? 'canceled' : STATUS_MAP[sub.status];
    if (ours === undefined) return ignored(`unknown subscription status '${sub.status}'`);
    if (ours === null) return ignored(`subscription ${sub.status}: it never started, so the tenant keeps its billing as it is`);
    const common: BillingChange = {
      providerCustomerId: sub.customerId,
      providerSubscriptionId: sub.subscriptionId,
      ...(sub.currentPeriodEnd ? { currentPeriodEnd: sub.currentPeriodEnd } : {}),
      ...(sub.seats !== undefined ? { seats: sub.seats } : {}),
    };
    if (ours === 'canceled') {
      // A late cancellation of a subscription the tenant has since replaced changes nothing.
      if (otherSubscription) return ignored(`subscription ${sub.subscriptionId} is not the tenant's current one (${current})`);
      // Not read-only: the cheapest plan's limits block only new creation.
      const fallback = await this.billing.cheapestPlanFor(locked.tier);
      return { tenantId, outcome: 'applied', detail: `subscription canceled: ${fallback.key} plan`, apply: { locked, change: { ...common, status: 'canceled', planKey: fallback.key } } };
    }
    const { plan, note } = await this.planOf(sub, locked);
    const change: BillingChange = { ...common, status: ours, pastDueFrom: event.created, trialEndsAt: sub.trialEnd, ...(plan ? { planKey: plan.key } : {}) };
    return { tenantId, outcome: 'applied', detail: `subscription ${sub.status}${plan ? `, ${plan.key} plan` : ''}${note ? `; ${note}` : ''}`, apply: { locked, change } };
  }

  /** The plan a subscription pays for: a price's lookup_key, else metadata.plan; undefined (plan kept) with a note when none fits. */
  private async planOf(sub: SubscriptionFacts, locked: LockedBilling): Promise<{ plan?: Plan; note?: string }> {
    const catalogue = await this.billing.catalogue();
    const plan = sub.planKeys.map((k) => catalogue.find((p) => p.key === k)).find((p) => p !== undefined);
    if (!plan) {
      this.logger.warn({ tenantId: locked.tenantId, subscriptionId: sub.subscriptionId, keys: sub.planKeys }, 'Stripe subscription names no known plan');
      return { note: `no known plan in the price lookup_key or metadata.plan (${sub.planKeys.join(', ') || 'none'}): plan kept` };
    }
    if (!plan.flags[tierFeature(locked.tier)]) {
      this.logger.warn({ tenantId: locked.tenantId, plan: plan.key, tier: locked.tier }, 'Stripe subscription plan does not include the tenant tier');
      return { note: `the ${plan.key} plan does not include the ${locked.tier} tier: plan kept` };
    }
    return { plan };
  }

  /** metadata.tenant_id naming an existing tenant, else the tenant with this customer, else with this subscription. */
  private async tenantOf(m: Queryable, facts: Facts): Promise<string | null> {
    if (facts.tenantId) {
      const rows = await m.query<unknown[]>('SELECT 1 FROM control.tenants WHERE id = $1', [facts.tenantId]);
      if (rows.length) return facts.tenantId;
    }
    const rows = await m.query<Array<{ tenant_id: string }>>(
      `SELECT tenant_id FROM control.organization_billing WHERE provider_customer_id = $1 OR provider_subscription_id = $2
        ORDER BY provider_customer_id = $1 DESC NULLS LAST LIMIT 1`,
      [facts.customerId, facts.subscriptionId ?? null],
    );
    return rows[0]?.tenant_id ?? null;
  }
}
