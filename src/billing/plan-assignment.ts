import { TIERS, type Tier } from '../tenancy/tenant-route.js';
import type { Queryable } from '../tenancy/tenant-directory.service.js';
import { BillingError } from './billing.errors.js';

export interface PlanChoice {
  /** The plan asked for; it must allow the tier. */
  plan?: string;
  /** The installation's default (BILLING_DEFAULT_PLAN), used when it allows the tier. */
  defaultPlan?: string;
  trialDays: number;
}

/**
 * Gives a new tenant its billing row, in the transaction that creates the tenant: the plan asked
 * for (refused when it does not allow the tier), else the default plan when it allows the tier,
 * else the cheapest plan that does. Trialing for trialDays, or active at once when 0.
 */
export async function assignPlan(q: Queryable, tenantId: string, tier: Tier, choice: PlanChoice): Promise<string> {
  const plans = await q.query<Array<{ key: string; allows: boolean }>>(
    `SELECT p.key, coalesce(f.enabled, false) AS allows
       FROM control.plans p LEFT JOIN control.plan_features f ON f.plan_key = p.key AND f.feature = $1
      ORDER BY p.rank`,
    [`tier_${tier}`],
  );
  let key: string | undefined;
  if (choice.plan !== undefined) {
    const asked = plans.find((p) => p.key === choice.plan);
    if (!asked) throw new BillingError('PLAN_NOT_FOUND', `there is no plan '${choice.plan}'; plans: ${plans.map((p) => p.key).join(', ')}`, 'plan');
    if (!asked.allows) throw new BillingError('PLAN_TIER_NOT_ALLOWED', `the ${choice.plan} plan does not include the ${tier} tier`, 'tier');
    key = asked.key;
  } else {
    key = plans.find((p) => p.key === choice.defaultPlan && p.allows)?.key ?? plans.find((p) => p.allows)?.key;
    if (!key) throw new BillingError('PLAN_TIER_NOT_ALLOWED', `no plan includes the ${tier} tier`, 'tier');
  }
  await q.query(
    `INSERT INTO control.organization_billing (tenant_id, plan_key, status, trial_ends_at)
     VALUES ($1, $2, CASE WHEN $3::int > 0 THEN 'trialing' ELSE 'active' END,
             CASE WHEN $3::int > 0 THEN now() + make_interval(days => $3::int) END)`,
    [tenantId, key, choice.trialDays],
  );
  return key;
}

/**
 * Refuses (PLAN_TIER_NOT_ALLOWED) a tier the tenant's plan does not include: its plan, or the
 * cheapest plan when it has no billing row (as Entitlements applies). Run by the move engine in
 * the transaction that holds the tenant's row, for the API and the CLI alike.
 */
export async function assertPlanIncludesTier(q: Queryable, tenantId: string, tier: Tier): Promise<void> {
  const rows = await q.query<Array<{ plan: string; feature: string | null }>>(
    `WITH plan AS (
       SELECT coalesce((SELECT plan_key FROM control.organization_billing WHERE tenant_id = $1),
                       (SELECT key FROM control.plans ORDER BY rank LIMIT 1)) AS key)
     SELECT plan.key AS plan, f.feature FROM plan
       LEFT JOIN control.plan_features f ON f.plan_key = plan.key AND f.kind = 'flag' AND f.enabled`,
    [tenantId],
  );
  const plan = rows[0]?.plan;
  if (!plan) return; // no plans at all: nothing to check against
  const allowed = TIERS.filter((t) => rows.some((r) => r.feature === `tier_${t}`));
  if (allowed.includes(tier)) return;
  throw new BillingError(
    'PLAN_TIER_NOT_ALLOWED',
    `the ${plan} plan does not include the ${tier} tier (it includes: ${allowed.join(', ') || 'none'}); upgrade the plan first`,
    'tier',
  );
}
