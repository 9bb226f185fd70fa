import { Injectable, Logger } from '@nestjs/common';
import { AuditService } from '../audit/audit.service.js';
import type { Actor } from '../lifecycle/actor.js';
import { recordPlatformEvent } from '../lifecycle/platform-audit.js';
import { TenantDirectory, type Queryable } from '../tenancy/tenant-directory.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { Tier } from '../tenancy/tenant-route.js';
import { TenancyError } from '../tenancy/tenancy.errors.js';
import { BillingError } from './billing.errors.js';
import { Entitlements } from './entitlements.service.js';
import { BILLING_COLUMNS, BillingRow, BillingState, BillingStatus, Plan, tierFeature, toBillingState } from './features.js';

/** A tenant's billing as its owners, platform admins and the CLI see it. */
export interface BillingView {
  tenantId: string;
  slug: string;
  state: BillingState;
  plan: Plan;
  readOnly: boolean;
  readOnlySince: Date | null;
  seatsUsed: number;
}

/** A tenant's billing row locked for a change, with what a change is checked against. */
export interface LockedBilling {
  tenantId: string;
  slug: string;
  tier: Tier;
  /** Null: the tenant has no billing row (should not happen; a change then creates it). */
  state: BillingState | null;
  /** When the payment provider created the last event applied here. */
  providerEventAt: Date | null;
}

/** What a change sets; what it leaves out stays as it is. */
export interface BillingChange {
  planKey?: string;
  status?: BillingStatus;
  /** When the tenant fell behind, should this change make it past due (default now); kept if it already is. */
  pastDueFrom?: Date;
  trialEndsAt?: Date | null;
  currentPeriodEnd?: Date | null;
  seats?: number | null;
  providerCustomerId?: string | null;
  providerSubscriptionId?: string | null;
}

/** Who made a change and why, as both audit logs record it. */
export interface BillingCause {
  actor: Actor;
  reason?: string;
  /** The payment-provider event that made it. */
  event?: { id: string; type: string };
}

const COMPARED = ['planKey', 'status', 'trialEndsAt', 'currentPeriodEnd', 'pastDueSince', 'seats', 'providerCustomerId', 'providerSubscriptionId'] as const;
type Compared = (typeof COMPARED)[number];

const shown = (v: unknown): unknown => (v instanceof Date ? v.toISOString() : (v ?? null));
const same = (a: unknown, b: unknown): boolean => (a instanceof Date && b instanceof Date ? a.getTime() === b.getTime() : (a ?? null) === (b ?? null));

/**
 * Plans and each tenant's billing state: what a tenant's owners see, plan changes by platform
 * admins and operators, and the one way every change (theirs or a payment-provider webhook's) is
 * written: in a control-plane transaction with its entries in the tenant's and the platform's
 * audit logs. Entitlements (the cache the admission check reads) is told after each commit.
 */
@Injectable()
export class BillingService {
  private readonly logger = new Logger(BillingService.name);

  constructor(
    private readonly pools: TenantPools,
    private readonly directory: TenantDirectory,
    private readonly entitlements: Entitlements,
    private readonly audit: AuditService,
  ) {}

  catalogue(): Promise<Plan[]> {
    return this.entitlements.catalogue();
  }

  /** The id of a slug (the CLI names tenants by slug). */
  async idOf(slug: string): Promise<string> {
    const rows = await this.pools.control().query<Array<{ id: string }>>('SELECT id FROM control.tenants WHERE slug = $1', [slug]);
    if (!rows.length) throw new TenancyError('TENANT_NOT_FOUND', `tenant '${slug}' was not found`, 'slug');
    return rows[0].id;
  }

  /** Billing of a tenant the caller is known to be in (a tenant route); what the admission check sees. */
  async view(tenant: { id: string; slug: string }): Promise<BillingView> {
    const [entitled, seatsUsed] = await Promise.all([this.entitlements.of(tenant.id), this.seatsUsed(tenant.id)]);
    const since = entitled.readOnlySince;
    return {
      tenantId: tenant.id,
      slug: tenant.slug,
      state: entitled.state,
      plan: entitled.plan,
      readOnly: since !== null && since.getTime() <= Date.now(),
      readOnlySince: since,
      seatsUsed,
    };
  }

  /** Billing of any tenant, by id (platform admins, the CLI). */
  async viewById(tenantId: string): Promise<BillingView> {
    const tenant = await this.directory.findTenant(tenantId);
    if (!tenant) throw new TenancyError('TENANT_NOT_FOUND', `tenant ${tenantId} was not found`, 'id');
    return this.view(tenant);
  }

  /**
   * A platform admin's or operator's plan change (and optionally status): the plan must exist and
   * include the tenant's current tier. Going below current usage is allowed: plan limits block
   * only new creation.
   */
  async changePlan(tenantId: string, request: { plan: string; status?: BillingStatus; reason?: string }, actor: Actor): Promise<BillingView> {
    const plan = await this.entitlements.plan(request.plan);
    if (!plan) {
      const keys = (await this.entitlements.catalogue()).map((p) => p.key).join(', ');
      throw new BillingError('PLAN_NOT_FOUND', `there is no plan '${request.plan}'; plans: ${keys}`, 'plan');
    }
    const slug = await this.pools.control().transaction(async (m) => {
      const locked = await this.lock(m, tenantId);
      if (!locked) throw new TenancyError('TENANT_NOT_FOUND', `tenant ${tenantId} was not found`, 'id');
      if (!plan.flags[tierFeature(locked.tier)]) {
        throw new BillingError(
          'PLAN_TIER_NOT_ALLOWED',
          `the ${plan.key} plan does not include the ${locked.tier} tier that tenant '${locked.slug}' is on; choose a plan that does, or move the tenant first`,
          'plan',
        );
      }
      await this.apply(m, locked, { planKey: plan.key, status: request.status }, { actor, reason: request.reason });
      return locked.slug;
    });
    await this.committed(tenantId);
    return this.view({ id: tenantId, slug });
  }

  /**
   * Locks a tenant's routing row (its tier cannot change meanwhile) and its billing row, in the
   * caller's transaction, in the order lifecycle changes take them. Null: no such tenant.
   */
  async lock(m: Queryable, tenantId: string): Promise<LockedBilling | null> {
    const tenants = await m.query<Array<{ slug: string; tier: Tier }>>('SELECT slug, tier FROM control.tenants WHERE id = $1 FOR SHARE', [tenantId]);
    if (!tenants.length) return null;
    const rows = await m.query<Array<BillingRow & { provider_event_at: Date | null }>>(
      `SELECT ${BILLING_COLUMNS}, provider_event_at FROM control.organization_billing WHERE tenant_id = $1 FOR UPDATE`,
      [tenantId],
    );
    return {
      tenantId,
      slug: tenants[0].slug,
      tier: tenants[0].tier,
      state: rows.length ? toBillingState(rows[0]) : null,
      providerEventAt: rows.length ? rows[0].provider_event_at : null,
    };
  }

  /** The cheapest plan that includes a tier (what a canceled subscription falls back to). */
  async cheapestPlanFor(tier: Tier): Promise<Plan> {
    const plan = (await this.entitlements.catalogue()).find((p) => p.flags[tierFeature(tier)]);
    if (!plan) throw new BillingError('PLAN_TIER_NOT_ALLOWED', `no plan includes the ${tier} tier`, 'tier');
    return plan;
  }

  /**
   * Writes a change to a locked billing row, in the caller's transaction, with its audit entries
   * (billing.plan_changed, billing.status_changed, or billing.updated for anything else) in both
   * logs. past_due_since follows the status: set on entering past_due, kept while past due,
   * cleared on leaving it. providerEventAt, when given, is stored even if nothing else changed.
   * Returns the fields that changed (empty: nothing did, and nothing was recorded).
   */
  async apply(m: Queryable, locked: LockedBilling, change: BillingChange, cause: BillingCause, providerEventAt?: Date): Promise<Compared[]> {
    const before = locked.state;
    const status = change.status ?? before?.status ?? 'active';
    const pastDueSince = status !== 'past_due' ? null : before?.status === 'past_due' && before.pastDueSince ? before.pastDueSince : (change.pastDueFrom ?? new Date());
    const next = {
      planKey: change.planKey ?? before?.planKey,
      status,
      trialEndsAt: change.trialEndsAt !== undefined ? change.trialEndsAt : (before?.trialEndsAt ?? null),
      currentPeriodEnd: change.currentPeriodEnd !== undefined ? change.currentPeriodEnd : (before?.currentPeriodEnd ?? null),
      pastDueSince,
      seats: change.seats !== undefined ? change.seats : (before?.seats ?? null),
      providerCustomerId: change.providerCustomerId !== undefined ? change.providerCustomerId : (before?.providerCustomerId ?? null),
      providerSubscriptionId: change.providerSubscriptionId !== undefined ? change.providerSubscriptionId : (before?.providerSubscriptionId ?? null),
    };
    if (!next.planKey) throw new Error(`a billing row for tenant ${locked.tenantId} needs a plan`);
    const changed = COMPARED.filter((f) => !before || !same(before[f], next[f]));
    if (!changed.length && !providerEventAt) return [];
    const params = [
      locked.tenantId,
      next.planKey,
      next.status,
      next.trialEndsAt,
      next.currentPeriodEnd,
      next.pastDueSince,
      next.seats,
      next.providerCustomerId,
      next.providerSubscriptionId,
      providerEventAt ?? null,
    ];
    if (before) {
      await m.query(
        `UPDATE control.organization_billing
            SET plan_key = $2, status = $3, trial_ends_at = $4, current_period_end = $5, past_due_since = $6, seats = $7,
                provider_customer_id = $8, provider_subscription_id = $9, provider_event_at = coalesce($10, provider_event_at),
                updated_at = CASE WHEN $11::boolean THEN now() ELSE updated_at END
          WHERE tenant_id = $1`,
        [...params, changed.length > 0],
      );
    } else {
      await m.query(
        `INSERT INTO control.organization_billing
           (tenant_id, plan_key, status, trial_ends_at, current_period_end, past_due_since, seats, provider_customer_id, provider_subscription_id, provider_event_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        params,
      );
    }
    if (changed.length) await this.record(m, locked, changed, before, next, cause);
    return changed;
  }

  /** After the change's transaction committed: this instance drops its cached entitlements at once (NOTIFY tells the others), and the tenant's audit entries are delivered. */
  async committed(tenantId: string): Promise<void> {
    this.entitlements.forget(tenantId);
    await this.audit
      .deliver(tenantId)
      .catch((err: Error) => this.logger.warn({ tenantId, reason: err.message }, "the tenant's audit entry of a billing change is queued; the sweeper delivers it"));
  }

  private async record(
    m: Queryable,
    locked: LockedBilling,
    changed: Compared[],
    before: BillingState | null,
    next: Record<Compared, unknown>,
    cause: BillingCause,
  ): Promise<void> {
    const changes = Object.fromEntries(changed.map((f) => [f, { from: shown(before?.[f]), to: shown(next[f]) }]));
    const metadata: Record<string, unknown> = { changes };
    if (cause.reason) metadata.reason = cause.reason;
    if (cause.event) metadata.stripeEvent = cause.event;
    const actions: string[] = [];
    if (changed.includes('planKey')) actions.push('billing.plan_changed');
    if (changed.includes('status')) actions.push('billing.status_changed');
    if (!actions.length) actions.push('billing.updated');
    const { actor } = cause;
    for (const action of actions) {
      await recordPlatformEvent(m, {
        actorKind: actor.kind,
        actorId: actor.id,
        action,
        tenantId: locked.tenantId,
        targetType: 'tenant_billing',
        targetId: locked.tenantId,
        requestId: actor.requestId,
        metadata: { slug: locked.slug, ...metadata },
      });
      await this.audit.enqueue(
        m,
        locked.tenantId,
        {
          actorKind: actor.kind === 'user' ? 'user' : actor.kind === 'support' ? 'support' : 'system',
          actorId: actor.kind === 'operator' ? `operator:${actor.id}` : actor.id,
          action,
          targetType: 'tenant_billing',
          targetId: locked.tenantId,
          metadata,
        },
        actor.requestId ? { id: actor.requestId } : undefined,
      );
    }
  }

  private async seatsUsed(tenantId: string): Promise<number> {
    const rows = await this.pools.control().query<Array<{ n: number }>>('SELECT count(*)::int AS n FROM control.memberships WHERE tenant_id = $1', [tenantId]);
    return rows[0].n;
  }
}
