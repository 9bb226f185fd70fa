import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import type { Queryable } from '../tenancy/tenant-directory.service.js';
import { BillingError } from './billing.errors.js';
import { Entitlements } from './entitlements.service.js';
import { LimitFeature, Plan } from './features.js';

/** The plan limits that cap how many of something a tenant may create. */
export type CountedFeature = Extract<LimitFeature, 'projects' | 'tasks_per_project' | 'seats'>;

const WHAT: Record<CountedFeature, { one: string; many: string; holder: string; undo: string }> = {
  projects: { one: 'project', many: 'projects', holder: 'this tenant has', undo: 'delete one' },
  tasks_per_project: { one: 'task per project', many: 'tasks per project', holder: 'this project has', undo: 'delete one' },
  seats: { one: 'seat', many: 'seats', holder: 'this tenant has', undo: 'remove a member' },
};

/** The advisory lock that serialises creators of one feature in one tenant (and project). */
const lockSql = 'SELECT pg_advisory_xact_lock(hashtextextended($1, 0))';
const lockKey = (feature: CountedFeature, tenantId: string, scope?: string) => `plan-limit:${feature}:${tenantId}${scope ? `:${scope}` : ''}`;

export function limitReached(plan: Plan, feature: CountedFeature, limit: number, usage: number): BillingError {
  const w = WHAT[feature];
  return new BillingError(
    'PLAN_LIMIT_REACHED',
    `the ${plan.key} plan allows ${limit} ${limit === 1 ? w.one : w.many}; ${w.holder} ${usage}. Upgrade the plan or ${w.undo}.`,
    undefined,
    undefined,
    { feature, limit, usage },
  );
}

/**
 * The plan's caps on what a tenant creates (projects, tasks per project, seats); the tiers it may
 * live in are checked by the move engine (assertPlanIncludesTier). A cap is checked in the transaction that creates the thing, under a
 * transaction-scoped advisory lock keyed on the tenant (and project), taken before counting: two
 * creators of the same tenant serialise, so the count one sees includes every row the other
 * committed, and a limit is never overshot. Unlimited features take no lock and count nothing.
 * Only creation is capped: a tenant over its limit (after a downgrade) keeps, reads, changes and
 * deletes what it has.
 */
@Injectable()
export class PlanLimits {
  private readonly skip: boolean;

  constructor(
    private readonly entitlements: Entitlements,
    config: ConfigService<AppConfig, true>,
  ) {
    this.skip = config.get('benchSkipBilling', { infer: true });
  }

  /**
   * Before creating one more of `feature`, in the creating transaction `q` (the tenant's
   * placement for projects and tasks): refuses with PLAN_LIMIT_REACHED when `count()` (the usage,
   * run after the lock, in the same transaction) is at the limit already.
   */
  async admit(tenantId: string, feature: Exclude<CountedFeature, 'seats'>, q: Queryable, count: () => Promise<number>, scope?: string): Promise<void> {
    const plan = await this.planOf(tenantId);
    const limit = plan?.limits[feature] ?? null;
    if (!plan || limit === null) return;
    await q.query(lockSql, [lockKey(feature, tenantId, scope)]);
    const usage = await count();
    if (usage >= limit) throw limitReached(plan, feature, limit, usage);
  }

  /**
   * A seat check to run in the control-plane transaction that has just inserted a membership
   * (TenantDirectory.addMember's alsoInTransaction): under the tenant's seat lock, the memberships
   * counted include the new one and every one committed before, so it refuses (and the insert
   * rolls back) when the new member would go over the plan's seats. Support staff admitted
   * through a grant hold no membership and never use a seat.
   */
  seatCheck(tenantId: string): (m: Queryable) => Promise<void> {
    return async (m) => {
      const plan = await this.planOf(tenantId);
      const limit = plan?.limits.seats ?? null;
      if (!plan || limit === null) return;
      await m.query(lockSql, [lockKey('seats', tenantId)]);
      // A statement of its own, after the lock: its snapshot sees what the previous holder committed.
      const withNew = await this.members(m, tenantId);
      if (withNew > limit) throw limitReached(plan, 'seats', limit, withNew - 1);
    };
  }

  private async planOf(tenantId: string): Promise<Plan | null> {
    if (this.skip) return null;
    return (await this.entitlements.of(tenantId)).plan;
  }

  private async members(q: Queryable, tenantId: string): Promise<number> {
    const [row] = await q.query<Array<{ n: number }>>('SELECT count(*)::int AS n FROM control.memberships WHERE tenant_id = $1', [tenantId]);
    return row.n;
  }
}
