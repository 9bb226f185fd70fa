import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import type { HttpClient, TestResponse } from '../../libs/testing/index.js';
import { withSuperuser } from '../../libs/testing/index.js';
import type { Tier } from '../../src/tenancy/tenant-route.js';
import { createTenant, TenantFixture, waitForMove } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * A move under load, through two app instances on one control plane: writers create, rename and
 * delete the tenant's projects during the whole move (copy, catch-up, freeze, flip). Every write
 * that got a 2xx must be found after the move exactly as acknowledged (0 lost); the only refusals
 * allowed are the cutover's 503s with Retry-After; reads never fail; a neighbour in the same
 * shared schema sees no error at all.
 */
let one: TestApp;
let two: TestApp;

beforeAll(async () => {
  const JWT_SECRET = randomBytes(32).toString('hex');
  const env = { JWT_SECRET, MOVE_BATCH_ROWS: '250', MOVE_CLEANUP_DELAY_SECONDS: '3600', LIFECYCLE_SWEEP_INTERVAL_MS: '0' };
  one = await startTestApp({ env });
  two = await startTestApp({ env, database: one.database });
});
afterAll(async () => {
  await two?.close();
  await one?.close();
});

interface Ledger {
  created: Set<string>;
  deleted: Set<string>;
  /** Last acknowledged name per project. */
  names: Map<string, string>;
  refused: TestResponse[];
  writes: number;
}

const CUTOVER_CODES = ['TENANT_WRITE_FROZEN', 'TENANT_MOVED'];

/** Seeds rows straight into the tenant's placement (quicker than the API for thousands). */
async function bulkProjects(tenant: TenantFixture, schema: string, n: number): Promise<void> {
  await withSuperuser(one.harness, one.harness.primaryPort, one.database, (c) =>
    c.query(
      `INSERT INTO "${schema}".projects (organization_id, id, name)
       SELECT $1, gen_random_uuid(), 'bulk ' || i FROM generate_series(1, $2::int) i`,
      [tenant.id, n],
    ),
  );
}

/** One writer: its own projects (so each one's order of acknowledged writes is the truth), on one instance. */
async function writer(client: HttpClient, slug: string, ledger: Ledger, stop: () => boolean, tag: string): Promise<void> {
  const mine: string[] = [];
  for (let i = 0; !stop(); i++) {
    let res: TestResponse;
    const op = i % 4;
    if (op === 3 && mine.length > 2) {
      const id = mine.shift()!;
      res = await client.delete(`/orgs/${slug}/projects/${id}`);
      if (res.status === 204) {
        ledger.deleted.add(id);
        ledger.names.delete(id);
      } else mine.unshift(id);
    } else if (op === 2 && mine.length) {
      const id = mine[i % mine.length];
      const name = `${tag} renamed ${i}`;
      res = await client.patch(`/orgs/${slug}/projects/${id}`, { name });
      if (res.status === 200) ledger.names.set(id, name);
    } else {
      const name = `${tag} created ${i}`;
      res = await client.post(`/orgs/${slug}/projects`, { name });
      if (res.status === 201) {
        ledger.created.add(res.body.id);
        ledger.names.set(res.body.id, name);
        mine.push(res.body.id);
      }
    }
    ledger.writes++;
    if (res.status >= 300) ledger.refused.push(res);
  }
}

async function allProjects(owner: HttpClient, slug: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let cursor: string | undefined;
  for (;;) {
    const page = await owner.get(`/orgs/${slug}/projects?limit=100${cursor ? `&cursor=${cursor}` : ''}`);
    expect(page.status).toBe(200);
    for (const p of page.body.items) out.set(p.id, p.name);
    cursor = page.body.nextCursor ?? undefined;
    if (!cursor) return out;
  }
}

describe.each([
  ['shared', 'dedicated', 'secondary'],
  ['dedicated', 'schema', undefined],
] as Array<[Tier, Tier, string | undefined]>)('a %s tenant moved to %s while it is written to', (from, to, server) => {
  it('loses no acknowledged write, refuses only with the cutover 503, keeps reads and neighbours working', async () => {
    const tenant = await createTenant(one, { tier: from, server: from === 'dedicated' ? 'primary' : undefined });
    const neighbour = await createTenant(one, { tier: 'shared' });
    if (from === 'shared') await bulkProjects(tenant, 'tenant_data', 3000);
    else {
      await withSuperuser(one.harness, one.harness.primaryPort, `t_${tenant.id.replaceAll('-', '')}`, (c) =>
        c.query(`INSERT INTO tenant_data.projects (organization_id, id, name) SELECT $1, gen_random_uuid(), 'bulk ' || i FROM generate_series(1, 3000) i`, [tenant.id]),
      );
    }
    const ownerOnTwo = await two.login(tenant.ownerEmail);
    const neighbourOnTwo = await two.login(neighbour.ownerEmail);
    const admin = await one.admin();

    const ledger: Ledger = { created: new Set(), deleted: new Set(), names: new Map(), refused: [], writes: 0 };
    const neighbourLedger: Ledger = { created: new Set(), deleted: new Set(), names: new Map(), refused: [], writes: 0 };
    const readFailures: TestResponse[] = [];
    let stopped = false;
    const stop = () => stopped;
    const reader = async (client: HttpClient, slug: string) => {
      while (!stopped) {
        const res = await client.get(`/orgs/${slug}/projects?limit=20`);
        if (res.status !== 200) readFailures.push(res);
      }
    };
    const load = Promise.all([
      writer(tenant.owner, tenant.slug, ledger, stop, 'w1'),
      writer(ownerOnTwo, tenant.slug, ledger, stop, 'w2'),
      writer(tenant.owner, tenant.slug, ledger, stop, 'w3'),
      reader(ownerOnTwo, tenant.slug),
      writer(neighbour.owner, neighbour.slug, neighbourLedger, stop, 'n1'),
      reader(neighbourOnTwo, neighbour.slug),
    ]);

    await new Promise((r) => setTimeout(r, 300));
    const started = await admin.post(`/tenants/${tenant.id}/move`, { tier: to, server });
    expect(started.status).toBe(202);
    const move = await waitForMove(admin, tenant.id, started.body.id, undefined, 120_000);
    // Keep writing a little after the flip: the new placement takes them.
    await new Promise((r) => setTimeout(r, 300));
    stopped = true;
    await load;

    expect(move).toMatchObject({ phase: 'flipped', error: null });
    expect(move.verification.ok).toBe(true);
    expect(ledger.writes).toBeGreaterThan(50);
    for (const res of ledger.refused) {
      expect(res.status).toBe(503);
      expect(CUTOVER_CODES).toContain(res.body.code);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    expect(readFailures).toEqual([]);
    expect(neighbourLedger.refused).toEqual([]);

    // Every acknowledged write is there, as acknowledged, read through the other instance.
    const after = await allProjects(ownerOnTwo, tenant.slug);
    for (const id of ledger.created) if (!ledger.deleted.has(id)) expect(after.has(id)).toBe(true);
    for (const id of ledger.deleted) expect(after.has(id)).toBe(false);
    for (const [id, name] of ledger.names) expect(after.get(id)).toBe(name);
    expect(after.size).toBe(3000 + ledger.created.size - ledger.deleted.size);
    const route = await admin.get(`/tenants/${tenant.id}`);
    expect(route.body.placement.tier).toBe(to);
  });
});
