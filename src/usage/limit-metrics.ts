import { Injectable } from '@nestjs/common';
import { TenantBulkhead, TenantLimitCounters } from '../tenancy/bulkhead.js';
import { MetricsService } from './metrics.service.js';

/**
 * The per-tenant limits' refusals as Prometheus metrics, read from tenancy's counters at scrape
 * time: by which limit, never by tenant (the per-tenant view is the usage API).
 */
@Injectable()
export class LimitMetrics {
  constructor(metrics: MetricsService, counters: TenantLimitCounters, bulkhead: TenantBulkhead) {
    metrics.counter({
      name: 'tenancy_rate_limited_total',
      help: 'Tenant requests refused with 429 RATE_LIMITED, by the limit that refused them (a user\'s share, or the whole tenant\'s)',
      labelNames: ['limit'],
      collect() {
        this.reset();
        this.inc({ limit: 'user' }, counters.throttledUser);
        this.inc({ limit: 'tenant' }, counters.throttledTenant);
      },
    });
    metrics.counter({
      name: 'tenancy_bulkhead_waits_total',
      help: 'Tenant requests that found their tenant at its concurrency cap and queued for a slot',
      collect() {
        this.reset();
        this.inc(counters.bulkheadWaits);
      },
    });
    metrics.counter({
      name: 'tenancy_bulkhead_rejections_total',
      help: 'Tenant requests refused with 429 TENANT_BUSY: no slot within BULKHEAD_WAIT_MS',
      collect() {
        this.reset();
        this.inc(counters.bulkheadRejections);
      },
    });
    metrics.counter({
      name: 'tenancy_statement_timeouts_total',
      help: "Tenant queries cancelled by their plan's statement timeout (503 QUERY_TIMEOUT)",
      collect() {
        this.reset();
        this.inc(counters.statementTimeouts);
      },
    });
    metrics.gauge({
      name: 'tenancy_bulkhead_active_slots',
      help: 'Shared-pool connections held under the per-tenant concurrency caps, all tenants together',
      collect() {
        let active = 0;
        for (const c of bulkhead.inUse().values()) active += c.active;
        this.set(active);
      },
    });
  }
}
