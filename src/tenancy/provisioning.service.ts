import { Inject, Injectable, Logger } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import { assignPlan } from '../billing/plan-assignment.js';
import { v7 as uuidv7 } from 'uuid';
import { assertPlacementAllowed, DATABASE_RUNTIME, DatabaseRuntime, dropPlacement, placementFor, preparePlacement } from './placements.js';
import { RoutingTable } from './routing-table.service.js';
import { TenantDirectory } from './tenant-directory.service.js';
import { TenantPools } from './tenant-pools.service.js';
import type { Placement, TenantRoute, Tier } from './tenant-route.js';
import { TenancyError } from './tenancy.errors.js';

export interface ProvisionTenant {
  slug: string;
  name: string;
  tier: Tier;
  ownerEmail: string;
  server?: string;
  /** Billing plan; default: BILLING_DEFAULT_PLAN when it allows the tier, else the cheapest plan that does. */
  plan?: string;
}

/**
 * Creates a tenant on any tier in one call: shared = rows; schema = its own schema, migrated;
 * dedicated = its own database on a registered server, migrated. A failure half way removes
 * what was made (schema, database, tenant row) and says why; the slug is free again.
 */
@Injectable()
export class ProvisioningService {
  private readonly logger = new Logger(ProvisioningService.name);

  constructor(
    @Inject(DATABASE_RUNTIME) private readonly runtime: DatabaseRuntime,
    private readonly pools: TenantPools,
    private readonly directory: TenantDirectory,
    private readonly routing: RoutingTable,
    private readonly config: ConfigService<AppConfig, true>,
  ) {}

  async provision(input: ProvisionTenant): Promise<TenantRoute> {
    assertPlacementAllowed(this.runtime, input.tier, input.server);
    await this.reclaimAbandoned(input.slug);
    const id = uuidv7();
    const placement = placementFor(this.runtime, id, input.tier, input.server);
    // One transaction: a refused slug leaves no new owner user behind either.
    const slugTaken = await this.pools.control().transaction(async (m) => {
      const inserted = await m.query<Array<{ id: string }>>(
        `INSERT INTO control.tenants (id, slug, name, status, tier, server_key, database_name, schema_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (slug) DO NOTHING RETURNING id`,
        [id, input.slug, input.name, input.tier === 'shared' ? 'active' : 'provisioning', input.tier,
          placement.serverKey, placement.database, placement.schema],
      );
      if (!inserted.length) return true;
      const owner = await this.directory.ensureUser(input.ownerEmail, m);
      await m.query(`INSERT INTO control.memberships (tenant_id, user_id, role) VALUES ($1, $2, 'owner')`, [id, owner.id]);
      const billing = this.config.get('billing', { infer: true });
      await assignPlan(m, id, input.tier, { plan: input.plan, defaultPlan: billing.defaultPlan, trialDays: billing.trialDays });
      return false;
    });
    if (slugTaken) throw new TenancyError('TENANT_SLUG_TAKEN', `the slug '${input.slug}' is already taken`, 'slug');
    this.routing.forgetTenant([input.slug], id);

    if (input.tier !== 'shared') {
      try {
        await preparePlacement(this.runtime, placement);
        await this.pools.control().query(
          `UPDATE control.tenants SET status = 'active', updated_at = now() WHERE id = $1`,
          [id],
        );
      } catch (err) {
        const reason = (err as Error).message;
        this.logger.error({ tenantId: id, tier: input.tier, server: placement.serverKey, reason }, 'provisioning failed; cleaning up');
        await this.undo(id, input.slug, placement).catch((cleanupErr: Error) =>
          this.logger.error({ tenantId: id, reason: cleanupErr.message }, 'cleanup after failed provisioning failed'),
        );
        throw new TenancyError(
          'PROVISIONING_FAILED',
          `could not prepare the ${input.tier} placement on server '${placement.serverKey}' (${describeCause(err)}); nothing was kept, try again`,
          undefined,
          { 'retry-after': '5' },
        );
      }
      this.routing.forgetTenant([input.slug], id);
    }
    const route = await this.directory.findTenant(id);
    return route!;
  }

  /**
   * A slug held by a tenant whose provisioning failed, or stopped with its process (still
   * 'provisioning' ten minutes on), is freed: its schema or database is dropped and its row removed.
   */
  private async reclaimAbandoned(slug: string): Promise<void> {
    const rows = await this.pools.control().query<Array<{ id: string; tier: Tier; server_key: string; database_name: string; schema_name: string }>>(
      `SELECT id, tier, server_key, database_name, schema_name FROM control.tenants
        WHERE slug = $1 AND (status = 'failed' OR (status = 'provisioning' AND updated_at < now() - interval '10 minutes'))`,
      [slug],
    );
    for (const r of rows) {
      this.logger.warn({ tenantId: r.id, tier: r.tier }, 'reclaiming the slug of an abandoned provisioning');
      await this.undo(r.id, slug, { tier: r.tier, serverKey: r.server_key, database: r.database_name, schema: r.schema_name });
    }
  }

  private async undo(id: string, slug: string, placement: Placement): Promise<void> {
    if (this.runtime.servers.has(placement.serverKey)) await dropPlacement(this.runtime, placement, id).catch(() => undefined);
    await this.pools.control().query('DELETE FROM control.tenants WHERE id = $1', [id]);
    this.routing.forgetTenant([slug], id);
  }
}

/** A cause a caller can act on, without internals such as hosts, roles or SQL. */
function describeCause(err: unknown): string {
  const code = (err as { code?: string }).code;
  if (code === 'ECONNREFUSED' || code === 'ETIMEDOUT' || code === 'ENOTFOUND') return 'the database server is unreachable';
  if (code === '53300') return 'the database server has no free connections';
  if (code === '42501') return 'the platform lacks a privilege on that server';
  if (code === '53100') return 'the database server is out of disk space';
  return 'the database server refused the change';
}
