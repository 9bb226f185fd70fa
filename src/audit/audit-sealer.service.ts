import { BeforeApplicationShutdown, Injectable, Logger } from '@nestjs/common';
import { quoteIdent } from '../../libs/postgres/index.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { Placement } from '../tenancy/tenant-route.js';

const BATCH = 10_000;
const DEBOUNCE_MS = 200;

/**
 * Seals tenants' new audit entries onto their hash chains (audit_seal(), migrations/tenant/0004),
 * just after the writes that made them commit: a short, separate transaction per tenant, debounced
 * so a burst of writes is sealed in one go. Reading, exporting or verifying a log seals it first,
 * and so does shutting down (before the pools close), so a short-lived process (the CLI) leaves
 * nothing waiting. Entries a crash left unsealed are sealed by the next write, read or checkpoint
 * of their tenant.
 */
@Injectable()
export class AuditSealer implements BeforeApplicationShutdown {
  private readonly logger = new Logger(AuditSealer.name);
  private readonly pending = new Map<string, { timer: NodeJS.Timeout; placement: Placement }>();
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly pools: TenantPools) {}

  async beforeApplicationShutdown(): Promise<void> {
    for (const [tenantId, { timer, placement }] of this.pending) {
      clearTimeout(timer);
      this.start(tenantId, placement);
    }
    this.pending.clear();
    await Promise.allSettled([...this.running]);
  }

  /** Seals the tenant's pending entries soon (once for a burst of writes). */
  schedule(tenantId: string, placement: Placement): void {
    if (this.pending.has(tenantId)) return;
    const timer = setTimeout(() => {
      this.pending.delete(tenantId);
      this.start(tenantId, placement);
    }, DEBOUNCE_MS);
    timer.unref();
    this.pending.set(tenantId, { timer, placement });
  }

  private start(tenantId: string, placement: Placement): void {
    const run = this.sealNow(tenantId, placement)
      .catch((err: Error) => this.logger.warn({ tenantId, reason: err.message }, 'sealing audit entries failed; the next write or read retries'))
      .finally(() => this.running.delete(run));
    this.running.add(run);
  }

  /** Seals every pending entry of the tenant now; returns how many. */
  async sealNow(tenantId: string, placement: Placement): Promise<number> {
    const leased = this.pools.lease(placement);
    const lease = leased instanceof Promise ? await leased : leased;
    const runner = lease.pool.createQueryRunner();
    try {
      let total = 0;
      for (;;) {
        // audit_seal() seals only the tenant the transaction is confined to.
        await runner.query('BEGIN');
        await runner.query(`SELECT set_config('app.current_org_id', $1, true)`, [tenantId]);
        const rows = await runner.query(`SELECT ${quoteIdent(placement.schema)}.audit_seal($1, $2) AS n`, [tenantId, BATCH]);
        await runner.query('COMMIT');
        total += rows[0].n;
        if (rows[0].n < BATCH) return total;
      }
    } catch (err) {
      await runner.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      await runner.release();
      lease.release();
    }
  }
}
