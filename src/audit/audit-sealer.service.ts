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

  /**
   * Queues the tenant's entries that have neither a place on the chain nor a queue row, and
   * returns how many. Only an app instance from before tenant migration 0004, still writing while
   * a rolling deploy applies it, leaves such entries. Nothing else would ever seal them, and the
   * log's listing (queue plus chain) would not show them. A read of the whole log (an anti-join,
   * linear), so it runs where the log is read whole anyway: verification. It is a write, so it
   * passes the tenant's write gate like one.
   */
  async requeueUnsealed(tenantId: string, placement: Placement): Promise<number> {
    const schema = quoteIdent(placement.schema);
    const queued = await this.inTenantTransactions(tenantId, placement, async (query) => {
      await query(`SELECT ${schema}.tenant_write_gate()`);
      const [row] = await query(
        `WITH queued AS (
           INSERT INTO ${schema}.audit_pending (id)
           SELECT a.id FROM ${schema}.audit_log a
            WHERE NOT EXISTS (SELECT 1 FROM ${schema}.audit_chain c WHERE c.organization_id = a.organization_id AND c.entry_id = a.id)
              AND NOT EXISTS (SELECT 1 FROM ${schema}.audit_pending p WHERE p.organization_id = a.organization_id AND p.id = a.id)
           ON CONFLICT DO NOTHING RETURNING id)
         SELECT count(*)::int AS n FROM queued`,
      );
      return [row.n as number];
    });
    if (queued) this.logger.warn({ tenantId, queued }, 'audit entries written without a queue row (an app instance older than tenant migration 0004) queued for sealing');
    return queued;
  }

  /** Seals every pending entry of the tenant now; returns how many. */
  sealNow(tenantId: string, placement: Placement): Promise<number> {
    // audit_seal() seals only the tenant the transaction is confined to; a batch a transaction.
    return this.inTenantTransactions(tenantId, placement, async (query) => {
      const [row] = await query(`SELECT ${quoteIdent(placement.schema)}.audit_seal($1, $2) AS n`, [tenantId, BATCH]);
      return row.n < BATCH ? [row.n] : [row.n, 'again'];
    });
  }

  /**
   * Runs `step` in transactions of the sealer's own on the tenant's placement, confined to the
   * tenant, one after another while it asks for another; returns the sum of what the steps
   * counted. A failed step is rolled back and thrown.
   */
  private async inTenantTransactions(
    tenantId: string,
    placement: Placement,
    step: (query: (sql: string, params?: unknown[]) => Promise<Array<Record<string, any>>>) => Promise<[number, 'again'?]>,
  ): Promise<number> {
    const leased = this.pools.lease(placement);
    const lease = leased instanceof Promise ? await leased : leased;
    const runner = lease.pool.createQueryRunner();
    try {
      let total = 0;
      for (;;) {
        await runner.query('BEGIN');
        await runner.query(`SELECT set_config('app.current_org_id', $1, true)`, [tenantId]);
        const [counted, again] = await step((sql, params) => runner.query(sql, params));
        await runner.query('COMMIT');
        total += counted;
        if (!again) return total;
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
