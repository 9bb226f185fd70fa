import type { Tier } from '../tenancy/tenant-route.js';

/** Plan features with an integer limit (NULL in plan_features: unlimited). */
export const LIMIT_FEATURES = [
  'seats',
  'projects',
  'tasks_per_project',
  'api_requests_per_minute',
  'statement_timeout_ms',
  'concurrent_requests',
] as const;
export type LimitFeature = (typeof LIMIT_FEATURES)[number];

/** Plan features that are on or off. */
export const FLAG_FEATURES = ['tier_shared', 'tier_schema', 'tier_dedicated'] as const;
export type FlagFeature = (typeof FLAG_FEATURES)[number];

export const BILLING_STATUSES = ['trialing', 'active', 'past_due', 'canceled'] as const;
export type BillingStatus = (typeof BILLING_STATUSES)[number];

export const tierFeature = (tier: Tier): FlagFeature => `tier_${tier}`;

export interface Plan {
  key: string;
  name: string;
  rank: number;
  limits: Record<LimitFeature, number | null>;
  flags: Record<FlagFeature, boolean>;
}

/** A tenant's billing row (control.organization_billing), as the app reads it. */
export interface BillingState {
  tenantId: string;
  planKey: string;
  status: BillingStatus;
  trialEndsAt: Date | null;
  currentPeriodEnd: Date | null;
  pastDueSince: Date | null;
  seats: number | null;
  providerCustomerId: string | null;
  providerSubscriptionId: string | null;
  updatedAt: Date;
}

export interface BillingRow {
  tenant_id: string;
  plan_key: string;
  status: BillingStatus;
  trial_ends_at: Date | null;
  current_period_end: Date | null;
  past_due_since: Date | null;
  seats: number | null;
  provider_customer_id: string | null;
  provider_subscription_id: string | null;
  updated_at: Date;
}

export const BILLING_COLUMNS =
  'tenant_id, plan_key, status, trial_ends_at, current_period_end, past_due_since, seats, provider_customer_id, provider_subscription_id, updated_at';

export function toBillingState(r: BillingRow): BillingState {
  return {
    tenantId: r.tenant_id,
    planKey: r.plan_key,
    status: r.status,
    trialEndsAt: r.trial_ends_at,
    currentPeriodEnd: r.current_period_end,
    pastDueSince: r.past_due_since,
    seats: r.seats,
    providerCustomerId: r.provider_customer_id,
    providerSubscriptionId: r.provider_subscription_id,
    updatedAt: r.updated_at,
  };
}

/**
 * From when an unpaid tenant is read-only: past due (or trialing past its trial's end) for longer
 * than the grace period. Null: it may write. A canceled subscription is not unpaid: the tenant
 * falls back to its (free) plan's limits, which block only new creation.
 */
export function readOnlySince(b: BillingState, graceDays: number): Date | null {
  const graceMs = graceDays * 86_400_000;
  const from = b.status === 'past_due' ? b.pastDueSince : b.status === 'trialing' ? b.trialEndsAt : null;
  return from ? new Date(from.getTime() + graceMs) : null;
}
