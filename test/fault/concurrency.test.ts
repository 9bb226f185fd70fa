import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import type { DataSource } from 'typeorm';
import { TIERS } from '../../src/tenancy/tenant-route.js';
import { createTenant, seedProjects, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Hundreds of interleaved requests for many tenants on every tier through the shared pools
 * (pool size 4, so connections are reused constantly): every response holds only its own
 * tenant's rows, failed requests leave nothing behind, and no pooled connection keeps a tenant.
 */
let t: TestApp;
const tenants: TenantFixture[] = [];
const projectsOf = new Map<string, string[]>();

beforeAll(async () => {
  t = await startTestApp({ env: { DB_POOL_MAX: '4', DB_DEDICATED_POOL_MAX: '2' } });
  for (const tier of TIERS) {
    for (let i = 0; i < 4; i++) {
      const tenant = await createTenant(t, { tier });
      tenants.push(tenant);
      projectsOf.set(tenant.slug, (await seedProjects(tenant, 3, 1)).map((p) => p.id));
    }
  }
});
afterAll(async () => {
  await t?.close();
});

type Op = () => Promise<void>;

function opsFor(tenant: TenantFixture, i: number): Op[] {
  const base = `/orgs/${tenant.slug}/projects`;
  const own = projectsOf.get(tenant.slug)!;
  return [
    async () => {
      const res = await tenant.owner.get(`${base}?limit=100`);
      expect(res.status).toBe(200);
      for (const p of res.body.items) expect(p.name.startsWith(tenant.slug)).toBe(true);
    },
    async () => {
      const res = await tenant.owner.get(`${base}/${own[i % own.length]}`);
      expect(res.status).toBe(200);
      expect(res.body.name.startsWith(tenant.slug)).toBe(true);
    },
    async () => {
      const res = await tenant.owner.post(base, { name: `${tenant.slug} concurrent ${i}` });
      expect(res.status).toBe(201);
    },
    async () => {
      // Fails half way: the project lookup runs inside the transaction, then the request is refused.
      const res = await tenant.owner.post(`${base}/0190a000-0000-7000-8000-000000000000/tasks`, { title: 'x' });
      expect(res.status).toBe(404);
    },
    async () => {
      const res = await tenant.owner.get(`${base}/${own[0]}/tasks`);
      expect(res.status).toBe(200);
      for (const task of res.body.items) expect(task.title.startsWith(tenant.slug)).toBe(true);
    },
  ];
}

async function runInterleaved(count: number, concurrency: number): Promise<void> {
  const ops: Op[] = [];
  for (let i = 0; i < count; i++) {
    const tenant = tenants[(i * 7) % tenants.length];
    const choices = opsFor(tenant, i);
    ops.push(choices[(i * 13) % choices.length]);
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < ops.length) await ops[next++]();
    }),
  );
}

/** Holds every connection of a pool at once and reads what tenant context each one carries. */
async function contextsOnPool(ds: DataSource): Promise<Array<{ org: string | null; path: string }>> {
  const pool = (ds.driver as unknown as { master: pg.Pool }).master;
  const clients: pg.PoolClient[] = [];
  try {
    for (let i = 0; i < pool.totalCount; i++) clients.push(await pool.connect());
    return await Promise.all(
      clients.map(async (c) => {
        const { rows } = await c.query(`SELECT current_setting('app.current_org_id', true) AS org, current_setting('search_path') AS path`);
        return rows[0] as { org: string | null; path: string };
      }),
    );
  } finally {
    for (const c of clients) c.release();
  }
}

describe('interleaved requests over shared pools', () => {
  it('serves 600 requests for 12 tenants of all tiers, each seeing only its own rows', async () => {
    await runInterleaved(600, 48);
    for (const tenant of tenants) {
      const res = await tenant.owner.get(`/orgs/${tenant.slug}/projects?limit=100`);
      expect(res.body.items.length).toBeGreaterThan(3);
      for (const p of res.body.items) expect(p.name.startsWith(tenant.slug)).toBe(true);
    }
  });

  it('leaves no tenant context or search_path on any pooled connection', async () => {
    const pools = t.pools().stats().keys;
    expect(pools.length).toBeGreaterThanOrEqual(2);
    const primary = t.pools().control();
    const contexts = await contextsOnPool(primary);
    expect(contexts.length).toBeGreaterThan(0);
    for (const c of contexts) {
      expect([null, '']).toContain(c.org);
      // The pool's default, never a tenant's own schema.
      expect(c.path).toBe('tenant_data');
    }
  });

  it('serves member routes (control plane only) without holding a tenant connection: no pool deadlock', async () => {
    const shared = tenants.filter((x) => x.tier !== 'dedicated');
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) => shared[i % shared.length]).map((x) => x.owner.get(`/orgs/${x.slug}/members`)),
    );
    for (const r of results) expect(r.status).toBe(200);
    // A deadlock would show as 503s after the 5 s connection timeout.
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('keeps the total number of pool connections under the cap', () => {
    const stats = t.pools().stats();
    expect(stats.reservedConnections).toBeLessThanOrEqual(stats.maxConnections);
  });
});

describe('database connections dying under load', () => {
  it('recovers when every app connection is terminated by the server, and answers 503 rather than 500 meanwhile', async () => {
    const statuses: number[] = [];
    const load = (async () => {
      for (let round = 0; round < 5; round++) {
        const rs = await Promise.all(tenants.map((x) => x.owner.get(`/orgs/${x.slug}/projects`)));
        statuses.push(...rs.map((r) => r.status));
      }
    })();
    const su = new pg.Client({
      host: '127.0.0.1',
      port: t.harness.primaryPort,
      user: 'postgres',
      password: t.harness.superuserPassword,
      database: 'postgres',
    });
    await su.connect();
    await su.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tenancy-app'`,
      [t.database],
    );
    await su.end();
    await load;
    for (const s of statuses) expect([200, 503]).toContain(s);
    // Afterwards every tenant is served again, on fresh connections.
    for (const x of tenants) expect((await x.owner.get(`/orgs/${x.slug}/projects`)).status).toBe(200);
    for (const c of await contextsOnPool(t.pools().control())) expect([null, '']).toContain(c.org);
  });
});
