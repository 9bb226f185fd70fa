import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { tenantObjectName } from '../../libs/postgres/index.js';
import type { HttpClient } from '../../libs/testing/index.js';
import { TenantLimitCounters } from '../../src/tenancy/bulkhead.js';
import { createTenant, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * GET /metrics on the real app: Prometheus text, no token needed, one registry per app instance,
 * request counters and durations labelled by method, route template, status class and tier that
 * move by exactly the requests made, and no tenant id or slug anywhere in the output.
 */

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const UNKNOWN_UUID = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';

/** The text exposition format: `name{label="value",...} number`, comments and blank lines aside. */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

async function scrape(app: TestApp): Promise<{ text: string; samples: Sample[] }> {
  const res = await app.http.get<string>('/metrics');
  expect(res.status).toBe(200);
  return { text: res.body, samples: parse(res.body) };
}

async function expectStatus(p: Promise<{ status: number; body: unknown }>, status: number): Promise<void> {
  const res = await p;
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
}

let t: TestApp;
let shared: TenantFixture;
let schema: TenantFixture;
let dedicated: TenantFixture;
let outsider: HttpClient;
const jwtSecret = randomBytes(32).toString('hex');

beforeAll(async () => {
  t = await startTestApp({ env: { JWT_SECRET: jwtSecret } });
  [shared, schema, dedicated] = await Promise.all([
    createTenant(t, { tier: 'shared' }),
    createTenant(t, { tier: 'schema' }),
    createTenant(t, { tier: 'dedicated' }),
  ]);
  outsider = await t.login(`outsider-${randomBytes(4).toString('hex')}@elsewhere.test`);
});
afterAll(async () => {
  await t?.close();
});

describe('GET /metrics: the per-tenant limits', () => {
  it('reports rate-limit refusals by limit, read from the counters at scrape time', async () => {
    const counters = t.app.get(TenantLimitCounters);
    const before = parse((await t.http.get<string>('/metrics')).body);
    counters.throttledUser += 2;
    counters.throttledTenant += 3;
    counters.bulkheadRejections += 1;
    counters.statementTimeouts += 4;
    const after = parse((await t.http.get<string>('/metrics')).body);
    expect(value(after, 'tenancy_rate_limited_total', { limit: 'user' }) - value(before, 'tenancy_rate_limited_total', { limit: 'user' })).toBe(2);
    expect(value(after, 'tenancy_rate_limited_total', { limit: 'tenant' }) - value(before, 'tenancy_rate_limited_total', { limit: 'tenant' })).toBe(3);
    expect(value(after, 'tenancy_bulkhead_rejections_total') - value(before, 'tenancy_bulkhead_rejections_total')).toBe(1);
    expect(value(after, 'tenancy_statement_timeouts_total') - value(before, 'tenancy_statement_timeouts_total')).toBe(4);
    expect(after.some((s) => s.name === 'tenancy_bulkhead_active_slots')).toBe(true);
  });
});

describe('GET /metrics', () => {
  it('answers Prometheus text without a token: request metrics, process metrics and pool gauges', async () => {
    // Opens the dedicated tenant's pool.
    await expectStatus(dedicated.owner.get(`/orgs/${dedicated.slug}/projects`), 200);
    const res = await t.http.get<string>('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.body).toContain('# TYPE http_requests_total counter');
    expect(res.body).toContain('# TYPE http_request_duration_seconds histogram');
    const samples = parse(res.body);
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(samples.some((s) => s.name === name)).toBe(true);
    }
    expect(value(samples, 'tenancy_pool_connections_max')).toBe(t.config.database.maxConnections);
    expect(value(samples, 'tenancy_pools_open')).toBeGreaterThanOrEqual(2); // the primary and the dedicated tenant's database
    expect(value(samples, 'tenancy_pool_connections_reserved')).toBeGreaterThanOrEqual(t.config.database.poolMax);
    expect(value(samples, 'tenancy_pool_lease_waiters')).toBe(0);
    expect(samples.some((s) => s.name === 'tenancy_usage_pending_tenant_days')).toBe(true);
  });

  it('counts requests by method, route template, status class and tier, exactly', async () => {
    const before = (await scrape(t)).samples;
    for (let i = 0; i < 5; i++) await expectStatus(shared.owner.get(`/orgs/${shared.slug}/projects`), 200);
    await expectStatus(schema.owner.post(`/orgs/${schema.slug}/projects`, { name: 'one' }), 201);
    await expectStatus(schema.owner.post(`/orgs/${schema.slug}/projects`, { name: 'two' }), 201);
    await expectStatus(schema.owner.get(`/orgs/${schema.slug}/projects/${UNKNOWN_UUID}`), 404);
    for (let i = 0; i < 3; i++) await expectStatus(dedicated.owner.get(`/orgs/${dedicated.slug}/projects`), 200);
    // The X-Tenant form is the same route.
    await expectStatus(dedicated.owner.withHeaders({ 'x-tenant': dedicated.slug }).get('/projects'), 200);
    // Refused before any tenant is entered: no tier.
    await expectStatus(outsider.get(`/orgs/${shared.slug}/projects`), 404);
    // No route at all: one label for every such path, whatever it is.
    await expectStatus(shared.owner.get(`/no/such/route/${shared.slug}`), 404);
    await expectStatus(t.http.get(`/${shared.id}`), 404);
    const after = (await scrape(t)).samples;

    const delta = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    const expected: Array<[Record<string, string>, number]> = [
      [{ method: 'GET', route: '/orgs/:slug/projects', status_class: '2xx', tier: 'shared' }, 5],
      [{ method: 'POST', route: '/orgs/:slug/projects', status_class: '2xx', tier: 'schema' }, 2],
      [{ method: 'GET', route: '/orgs/:slug/projects/:projectId', status_class: '4xx', tier: 'schema' }, 1],
      [{ method: 'GET', route: '/orgs/:slug/projects', status_class: '2xx', tier: 'dedicated' }, 4],
      [{ method: 'GET', route: '/orgs/:slug/projects', status_class: '4xx', tier: 'none' }, 1],
      [{ method: 'GET', route: 'unmatched', status_class: '4xx', tier: 'none' }, 2],
      [{ method: 'GET', route: '/orgs/:slug/projects', status_class: '2xx', tier: 'schema' }, 0],
    ];
    for (const [labels, n] of expected) {
      expect({ labels, requests: delta('http_requests_total', labels) }).toEqual({ labels, requests: n });
      expect({ labels, observed: delta('http_request_duration_seconds_count', labels) }).toEqual({ labels, observed: n });
      // Every request lands in the +Inf bucket.
      expect(delta('http_request_duration_seconds_bucket', { ...labels, le: '+Inf' })).toBe(n);
    }
    expect(delta('http_request_duration_seconds_sum', { route: '/orgs/:slug/projects', tier: 'shared' })).toBeGreaterThan(0);
    // Exactly the four labels, nothing else.
    for (const s of after.filter((x) => x.name === 'http_requests_total')) {
      expect(Object.keys(s.labels).sort()).toEqual(['method', 'route', 'status_class', 'tier']);
      expect(['none', 'shared', 'schema', 'dedicated']).toContain(s.labels.tier);
    }
  });

  it('never names a tenant: no id, slug or database name anywhere in the output', async () => {
    const { text } = await scrape(t);
    for (const tenant of [shared, schema, dedicated]) {
      expect(text).not.toContain(tenant.id);
      expect(text).not.toContain(tenant.id.replaceAll('-', ''));
      expect(text).not.toContain(tenantObjectName(tenant.id));
      expect(text).not.toContain(tenant.slug);
    }
    const routes = new Set(parse(text).filter((s) => s.name === 'http_requests_total').map((s) => s.labels.route));
    for (const route of routes) expect(route === 'unmatched' || route.startsWith('/')).toBe(true);
    expect([...routes].some((r) => r.includes('no/such'))).toBe(false);
  });

  it('keeps one registry per app instance', async () => {
    const two = await startTestApp({ database: t.database, env: { JWT_SECRET: jwtSecret } });
    try {
      const labels = { method: 'GET', route: '/orgs/:slug/projects', status_class: '2xx', tier: 'shared' };
      expect(value((await scrape(two)).samples, 'http_requests_total', labels)).toBe(0);
      const onOne = value((await scrape(t)).samples, 'http_requests_total', labels);
      expect(onOne).toBeGreaterThanOrEqual(5);
      const ownerOnTwo = await two.login(shared.ownerEmail);
      await expectStatus(ownerOnTwo.get(`/orgs/${shared.slug}/projects`), 200);
      expect(value((await scrape(two)).samples, 'http_requests_total', labels)).toBe(1);
      expect(value((await scrape(t)).samples, 'http_requests_total', labels)).toBe(onOne);
    } finally {
      await two.close();
    }
  });
});
