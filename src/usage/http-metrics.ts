import { Injectable, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Counter, Histogram } from 'prom-client';
import type { TenantRequest } from '../tenancy/tenant-access.guard.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import { MetricsService } from './metrics.service.js';

/** The label for requests no route matched: their paths are whatever a client sent, so never a label of their own. */
export const UNMATCHED_ROUTE = 'unmatched';

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
const STATUS_CLASSES = ['1xx', '1xx', '2xx', '3xx', '4xx', '5xx'];
const TIERS = ['none', 'shared', 'schema', 'dedicated'];

type Labels = { method: string; route: string; status_class: string; tier: string };
type LabelName = keyof Labels;

function tierIndex(req: TenantRequest): number {
  switch (req.tenantAccess?.route.placement.tier) {
    case 'shared':
      return 1;
    case 'schema':
      return 2;
    case 'dedicated':
      return 3;
    default:
      return 0;
  }
}

/**
 * Request count and duration by method, route template, status class and tenant tier, recorded
 * in Fastify's onResponse (which also sees requests refused by guards, and unmatched ones).
 * Never labelled by tenant: the tier says which kind of placement served it, the route template
 * which endpoint. The labels objects are built once per combination and reused.
 *
 * Also the connection pool gauges of TenantPools, read at scrape time (aggregates only: pool keys
 * name dedicated databases, which are named after tenants).
 */
@Injectable()
export class HttpMetrics implements OnModuleInit {
  private readonly requests: Counter<LabelName>;
  private readonly duration: Histogram<LabelName>;
  /** route template → method index → status class and tier → labels. */
  private readonly labelsCache = new Map<string, Labels[][]>();

  constructor(
    private readonly metrics: MetricsService,
    private readonly adapterHost: HttpAdapterHost,
    pools: TenantPools,
  ) {
    const labelNames: LabelName[] = ['method', 'route', 'status_class', 'tier'];
    this.requests = metrics.counter({ name: 'http_requests_total', help: 'HTTP requests answered, by method, route template, status class and tenant tier', labelNames });
    this.duration = metrics.histogram({
      name: 'http_request_duration_seconds',
      help: 'Time from the request arriving to its response being sent, by method, route template, status class and tenant tier',
      labelNames,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    });
    const stat = (name: string, help: string, read: (s: ReturnType<TenantPools['stats']>) => number) =>
      metrics.gauge({
        name,
        help,
        collect() {
          this.set(read(pools.stats()));
        },
      });
    stat('tenancy_pools_open', 'Connection pools open in this instance (the primary database and one per dedicated database in use)', (s) => s.pools);
    stat('tenancy_pool_connections_reserved', 'Connections reserved by the open pools, out of tenancy_pool_connections_max (DB_MAX_CONNECTIONS)', (s) => s.reservedConnections);
    stat('tenancy_pool_connections_max', 'Cap on the connections all pools of this instance may hold together (DB_MAX_CONNECTIONS)', (s) => s.maxConnections);
    stat('tenancy_pool_lease_waiters', 'Requests waiting for connection budget to open or grow a pool', (s) => s.waiting);
  }

  onModuleInit(): void {
    // The CLI builds the app without an HTTP server: nothing to measure there.
    const fastify = this.adapterHost.httpAdapter?.getInstance?.() as FastifyInstance | undefined;
    if (!fastify || typeof fastify.addHook !== 'function') return;
    this.metrics.collectDefaults();
    fastify.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
      this.observe(request as TenantRequest, reply);
      done();
    });
  }

  private observe(req: TenantRequest, reply: FastifyReply): void {
    const labels = this.labelsFor(req.routeOptions.url ?? UNMATCHED_ROUTE, req.method, reply.statusCode, tierIndex(req));
    this.requests.inc(labels);
    this.duration.observe(labels, reply.elapsedTime / 1000);
  }

  private labelsFor(route: string, method: string, status: number, tier: number): Labels {
    let byMethod = this.labelsCache.get(route);
    if (byMethod === undefined) {
      byMethod = [];
      this.labelsCache.set(route, byMethod);
    }
    let m = METHODS.indexOf(method);
    if (m < 0) m = METHODS.length;
    let byStatus = byMethod[m];
    if (byStatus === undefined) byStatus = byMethod[m] = [];
    const statusClass = status >= 100 && status < 600 ? Math.floor(status / 100) : 5;
    const i = statusClass * TIERS.length + tier;
    let labels = byStatus[i];
    if (labels === undefined) {
      labels = byStatus[i] = { method: METHODS[m] ?? 'OTHER', route, status_class: STATUS_CLASSES[statusClass], tier: TIERS[tier] };
    }
    return labels;
  }
}
