import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Counter } from 'prom-client';
import type { AppConfig } from '../../config/configuration.js';
import type { TenantRequest } from '../tenancy/tenant-access.guard.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import { MetricsService } from './metrics.service.js';
import { utcDay } from './usage-queries.js';

/** One tenant's counts for one UTC day not yet added to usage_daily. */
interface Pending {
  requests: number;
  errors: number;
  writes: number;
  dbTimeMs: number;
}

/** What one flush takes from a Pending: subtracted from it only once the flush committed. */
interface Taken extends Pending {
  day: string;
  tenantId: string;
  from: Map<string, Pending>;
}

const DAY_MS = 86_400_000;

// Adds this instance's counts to the stored ones; unknown tenants (deleted meanwhile) drop out of
// the join instead of failing the batch on the foreign key. Rows in key order, so two instances
// flushing at once lock them in the same order (no deadlock).
const FLUSH_SQL = `
  INSERT INTO control.usage_daily AS u (tenant_id, day, requests, errors, writes, db_time_ms)
  SELECT d.tenant_id, d.day, d.requests, d.errors, d.writes, d.db_time_ms
    FROM unnest($1::uuid[], $2::date[], $3::bigint[], $4::bigint[], $5::bigint[], $6::float8[])
           AS d (tenant_id, day, requests, errors, writes, db_time_ms)
    JOIN control.tenants t ON t.id = d.tenant_id
   ORDER BY d.tenant_id, d.day
  ON CONFLICT (tenant_id, day) DO UPDATE SET
    requests   = u.requests + EXCLUDED.requests,
    errors     = u.errors + EXCLUDED.errors,
    writes     = u.writes + EXCLUDED.writes,
    db_time_ms = u.db_time_ms + EXCLUDED.db_time_ms,
    updated_at = now()
  RETURNING u.tenant_id, u.day::text AS day`;

/**
 * Usage metering: requests, errors (status >= 400), writes (other than GET, HEAD and OPTIONS,
 * answered < 400) and database time per tenant and UTC day, counted in memory by every instance
 * in Fastify's onResponse (a Map lookup and a few additions) and added to control.usage_daily
 * every USAGE_FLUSH_INTERVAL_MS by one statement for all tenants.
 *
 * Counted: requests the tenant access guard admitted (it set req.tenantAccess), including those
 * a later check, a pipe or the handler refused. Not counted: requests refused before admission
 * (non-members' 404s, which anyone could cause; suspended tenants; roles refused), and requests
 * made through a platform support grant (the platform's staff, not the tenant's usage).
 *
 * A flush takes a copy of the counts and subtracts it only once its statement committed: a
 * failed flush leaves everything for the next one, and what arrived meanwhile is kept. The
 * application flushes once more when it shuts down.
 */
@Injectable()
export class UsageMeter implements OnModuleInit, OnApplicationBootstrap, OnModuleDestroy, BeforeApplicationShutdown {
  private readonly logger = new Logger(UsageMeter.name);
  private readonly enabled: boolean;
  private readonly intervalMs: number;
  /** UTC day → tenant id → counts; today's map is kept at hand. */
  private readonly days = new Map<string, Map<string, Pending>>();
  private today = new Map<string, Pending>();
  private todayEndsAt = 0;
  private hooked = false;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private flushing: Promise<void> = Promise.resolve();
  private readonly flushes: Counter<'outcome'>;

  constructor(
    private readonly pools: TenantPools,
    private readonly adapterHost: HttpAdapterHost,
    config: ConfigService<AppConfig, true>,
    metrics: MetricsService,
  ) {
    this.enabled = !config.get('benchSkipBilling', { infer: true });
    this.intervalMs = config.get('usage', { infer: true }).flushIntervalMs;
    this.flushes = metrics.counter({ name: 'tenancy_usage_flushes_total', help: 'Flushes of usage counters to usage_daily, by outcome (ok, failed)', labelNames: ['outcome'] });
    const days = this.days;
    metrics.gauge({
      name: 'tenancy_usage_pending_tenant_days',
      help: 'Tenant and day pairs counted in memory and not yet flushed to usage_daily',
      collect() {
        let n = 0;
        for (const byTenant of days.values()) n += byTenant.size;
        this.set(n);
      },
    });
  }

  onModuleInit(): void {
    // BENCH_SKIP_BILLING: no hook at all, so the bench measures what metering costs.
    if (!this.enabled) return;
    // The CLI builds the app without an HTTP server: nothing to meter there.
    const fastify = this.adapterHost.httpAdapter?.getInstance?.() as FastifyInstance | undefined;
    if (!fastify || typeof fastify.addHook !== 'function') return;
    this.hooked = true;
    fastify.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
      const access = (request as TenantRequest).tenantAccess;
      if (access !== undefined && access.supportGrant === undefined) {
        this.record(access.route.id, request.method, reply.statusCode, (request as TenantRequest).dbTimeMs);
      }
      done();
    });
    // After the server stopped and its last requests were answered (the pools close later, in
    // onApplicationShutdown): what those requests added is flushed too.
    fastify.addHook('onClose', async () => {
      await this.flushOrLog('shutdown');
    });
  }

  onApplicationBootstrap(): void {
    if (this.hooked) this.schedule();
  }

  onModuleDestroy(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Before the HTTP server closes: most counts go now, while every database is surely still up. */
  async beforeApplicationShutdown(): Promise<void> {
    if (this.hooked) await this.flushOrLog('shutdown');
  }

  /** Counts one answered request of a tenant. Allocates only for a tenant's first request of a flush window. */
  record(tenantId: string, method: string, status: number, dbTimeMs: number | undefined): void {
    const now = Date.now();
    if (now >= this.todayEndsAt) this.startDay(now);
    let p = this.today.get(tenantId);
    if (p === undefined) {
      p = { requests: 0, errors: 0, writes: 0, dbTimeMs: 0 };
      this.today.set(tenantId, p);
    }
    p.requests++;
    if (status >= 400) p.errors++;
    else if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') p.writes++;
    if (dbTimeMs !== undefined) p.dbTimeMs += dbTimeMs;
  }

  /**
   * Adds every count this instance holds to usage_daily in one statement, after any flush under
   * way. Rejects when the statement failed (the counts stay for the next flush). Counts of
   * tenants that no longer exist are dropped, with a warning.
   */
  flush(): Promise<void> {
    const run = this.flushing.then(() => this.flushOnce());
    this.flushing = run.catch(() => undefined);
    return run;
  }

  private startDay(now: number): void {
    const day = utcDay(new Date(now));
    this.todayEndsAt = (Math.floor(now / DAY_MS) + 1) * DAY_MS;
    let map = this.days.get(day);
    if (map === undefined) {
      map = new Map();
      this.days.set(day, map);
    }
    this.today = map;
  }

  private async flushOnce(): Promise<void> {
    const taken: Taken[] = [];
    for (const [day, byTenant] of this.days) {
      if (byTenant.size === 0 && byTenant !== this.today) {
        this.days.delete(day);
        continue;
      }
      for (const [tenantId, p] of byTenant) {
        if (p.requests > 0) taken.push({ day, tenantId, from: byTenant, requests: p.requests, errors: p.errors, writes: p.writes, dbTimeMs: p.dbTimeMs });
      }
    }
    if (taken.length === 0) return;
    // On failure (database down, no privilege; or 23503, a tenant deleted between the join and the
    // foreign-key check, which the next flush's join leaves out) nothing was subtracted: the next
    // flush retries all of it.
    const written = await this.pools
      .control()
      .query<Array<{ tenant_id: string; day: string }>>(FLUSH_SQL, [
        taken.map((t) => t.tenantId),
        taken.map((t) => t.day),
        taken.map((t) => t.requests),
        taken.map((t) => t.errors),
        taken.map((t) => t.writes),
        taken.map((t) => t.dbTimeMs),
      ])
      .catch((err: unknown) => {
        this.flushes.inc({ outcome: 'failed' });
        throw err;
      });
    this.flushes.inc({ outcome: 'ok' });
    const stored = new Set(written.map((r) => `${r.tenant_id}/${r.day}`));
    const dropped = new Set<string>();
    for (const t of taken) {
      if (!stored.has(`${t.tenantId}/${t.day}`)) dropped.add(t.tenantId);
      this.settle(t);
    }
    if (dropped.size > 0) {
      this.logger.warn({ tenants: [...dropped] }, 'usage of tenants that no longer exist was dropped');
    }
  }

  /** Subtracts what a committed flush wrote; forgets counts nothing was added to meanwhile. */
  private settle(t: Taken): void {
    const p = t.from.get(t.tenantId);
    if (p === undefined) return;
    p.requests -= t.requests;
    p.errors -= t.errors;
    p.writes -= t.writes;
    p.dbTimeMs -= t.dbTimeMs;
    // Database time only ever comes with a request: none left means the rest is rounding.
    if (p.requests === 0) t.from.delete(t.tenantId);
    else if (p.dbTimeMs < 0) p.dbTimeMs = 0;
    if (t.from.size === 0 && t.from !== this.today) this.days.delete(t.day);
  }

  private async flushOrLog(when: 'periodic' | 'shutdown'): Promise<void> {
    try {
      await this.flush();
    } catch (err) {
      const pending = [...this.days].flatMap(([day, byTenant]) => [...byTenant].map(([tenantId, p]) => ({ day, tenantId, ...p })));
      if (when === 'shutdown') {
        // Nothing can retry once the process is gone: the counts are logged so they are not lost silently.
        this.logger.error({ err: (err as Error).message, pending }, 'usage counters could not be flushed at shutdown');
      } else {
        this.logger.warn({ err: (err as Error).message, tenantDays: pending.length }, 'usage flush failed; the counts are kept for the next flush');
      }
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.flushOrLog('periodic').finally(() => this.schedule());
    }, this.intervalMs);
    // A pending flush never keeps the process alive (the shutdown flush catches what is left).
    this.timer.unref();
  }
}
