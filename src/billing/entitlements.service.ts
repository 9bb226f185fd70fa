import { Injectable, Logger } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import { NotifiedCache } from '../tenancy/notified-cache.js';
import { RoutingTable } from '../tenancy/routing-table.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { TenantLimits } from '../tenancy/tenant-route.js';
import {
  BILLING_COLUMNS,
  BillingRow,
  BillingState,
  FLAG_FEATURES,
  FlagFeature,
  LIMIT_FEATURES,
  LimitFeature,
  Plan,
  readOnlySince,
  toBillingState,
} from './features.js';

/** What a tenant is entitled to right now: its billing state and its plan. */
export interface Entitled {
  state: BillingState;
  plan: Plan;
  /** The per-request limits of the plan (one object per plan, shared by its tenants). */
  limits: TenantLimits;
  /** From when the tenant is read-only for non-payment; null when it is not heading there. */
  readOnlySince: Date | null;
}

interface PlanRow {
  key: string;
  name: string;
  rank: number;
  feature: string | null;
  kind: 'limit' | 'flag' | null;
  limit_value: string | null;
  enabled: boolean | null;
}

/**
 * Plans and every tenant's billing state, cached in memory so that a request's plan check costs
 * no query, and dropped on every instance the moment a row changes (NOTIFY from the triggers of
 * migrations/control/0007_billing.sql, through the routing listener). While that listener is
 * down nothing is cached, as for routes.
 */
@Injectable()
export class Entitlements {
  private readonly logger = new Logger(Entitlements.name);
  private plans?: Map<string, { plan: Plan; limits: TenantLimits }>;
  private plansLoading?: Promise<Map<string, { plan: Plan; limits: TenantLimits }>>;
  private readonly states: NotifiedCache<Entitled>;
  /** Bumped when the catalogue changes: plans loaded before that are not kept. */
  private plansGeneration = 0;
  private readonly graceDays: number;

  constructor(
    private readonly pools: TenantPools,
    private readonly routing: RoutingTable,
    config: ConfigService<AppConfig, true>,
  ) {
    this.states = new NotifiedCache((tenantId) => this.load(tenantId), {
      ttlMs: config.get('routingCacheTtlMs', { infer: true }),
      isListening: () => routing.isListening(),
    });
    this.graceDays = config.get('billing', { infer: true }).pastDueGraceDays;
    routing.subscribe('billing', (msg) => {
      if (msg && typeof msg.tenantId === 'string') {
        this.states.forget(msg.tenantId);
      } else {
        // The plan catalogue changed (or the listener was lost): everything is re-read.
        this.plansGeneration++;
        this.plans = undefined;
        this.states.clear();
      }
    });
  }

  /** The tenant's entitlements; synchronous on a cache hit. */
  of(tenantId: string): Entitled | Promise<Entitled> {
    return this.states.get(tenantId);
  }

  /** Drops what is cached about a tenant (right after a local change, before NOTIFY arrives). */
  forget(tenantId: string): void {
    this.states.forget(tenantId);
  }

  /** Every plan, cheapest first. */
  async catalogue(): Promise<Plan[]> {
    const plans = await this.loadPlans();
    return [...plans.values()].map((p) => p.plan).sort((a, b) => a.rank - b.rank);
  }

  async plan(key: string): Promise<Plan | undefined> {
    return (await this.loadPlans()).get(key)?.plan;
  }

  private async load(tenantId: string): Promise<Entitled> {
    const [plans, rows] = await Promise.all([
      this.loadPlans(),
      this.pools.control().query<BillingRow[]>(`SELECT ${BILLING_COLUMNS} FROM control.organization_billing WHERE tenant_id = $1`, [tenantId]),
    ]);
    let state: BillingState;
    if (rows.length) {
      state = toBillingState(rows[0]);
    } else {
      // Every tenant gets a row when it is created (and the migration gave existing tenants one);
      // should one be missing, the tenant gets the cheapest plan rather than no limits at all.
      const cheapest = [...plans.values()].sort((a, b) => a.plan.rank - b.plan.rank)[0];
      this.logger.warn({ tenantId }, 'tenant has no billing row; applying the cheapest plan');
      state = {
        tenantId,
        planKey: cheapest.plan.key,
        status: 'active',
        trialEndsAt: null,
        currentPeriodEnd: null,
        pastDueSince: null,
        seats: null,
        providerCustomerId: null,
        providerSubscriptionId: null,
        updatedAt: new Date(),
      };
    }
    const entry = plans.get(state.planKey);
    if (!entry) throw new Error(`tenant ${tenantId} is on plan '${state.planKey}', which has no row in control.plans`);
    return { state, plan: entry.plan, limits: entry.limits, readOnlySince: readOnlySince(state, this.graceDays) };
  }

  private loadPlans(): Promise<Map<string, { plan: Plan; limits: TenantLimits }>> {
    if (this.plans) return Promise.resolve(this.plans);
    if (this.plansLoading) return this.plansLoading;
    const generation = this.plansGeneration;
    const loading = this.pools
      .control()
      .query<PlanRow[]>(
        `SELECT p.key, p.name, p.rank, f.feature, f.kind, f.limit_value, f.enabled
           FROM control.plans p LEFT JOIN control.plan_features f ON f.plan_key = p.key ORDER BY p.rank, f.feature`,
      )
      .then((rows) => {
        const plans = new Map<string, { plan: Plan; limits: TenantLimits }>();
        for (const r of rows) {
          let entry = plans.get(r.key);
          if (!entry) {
            const limits = Object.fromEntries(LIMIT_FEATURES.map((f) => [f, null])) as Record<LimitFeature, number | null>;
            const flags = Object.fromEntries(FLAG_FEATURES.map((f) => [f, false])) as Record<FlagFeature, boolean>;
            entry = { plan: { key: r.key, name: r.name, rank: r.rank, limits, flags }, limits: { requestsPerMinute: null, statementTimeoutMs: null, maxConcurrent: null } };
            plans.set(r.key, entry);
          }
          if (r.kind === 'limit' && (LIMIT_FEATURES as readonly string[]).includes(r.feature!)) {
            entry.plan.limits[r.feature as LimitFeature] = r.limit_value === null ? null : Number(r.limit_value);
          } else if (r.kind === 'flag' && (FLAG_FEATURES as readonly string[]).includes(r.feature!)) {
            entry.plan.flags[r.feature as FlagFeature] = r.enabled === true;
          }
        }
        for (const { plan, limits } of plans.values()) {
          limits.requestsPerMinute = plan.limits.api_requests_per_minute;
          limits.statementTimeoutMs = plan.limits.statement_timeout_ms;
          limits.maxConcurrent = plan.limits.concurrent_requests;
        }
        if (this.routing.isListening() && generation === this.plansGeneration) this.plans = plans;
        return plans;
      })
      .finally(() => {
        if (this.plansLoading === loading) this.plansLoading = undefined;
      });
    this.plansLoading = loading;
    return loading;
  }
}
