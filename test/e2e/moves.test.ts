import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { tenantObjectName } from '../../libs/postgres/index.js';
import { withSuperuser } from '../../libs/testing/index.js';
import { MovesService } from '../../src/lifecycle/moves.service.js';
import { preparePlacement, placementFor } from '../../src/tenancy/placements.js';
import type { Tier } from '../../src/tenancy/tenant-route.js';
import { createTenant, seedProjects, TenantFixture, uniqueSlug, waitForMove } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Moves between placements, on real PostgreSQL: every direction keeps every row (checked through
 * the API and by the move's own verification), leaves other tenants alone, fences and then cleans
 * its source up; bad requests are refused; a move whose verification fails changes nothing.
 */
let t: TestApp;
let admin: Awaited<ReturnType<TestApp['admin']>>;
let neighbour: TenantFixture;
let neighbourBefore: unknown;

beforeAll(async () => {
  t = await startTestApp({ env: { MOVE_BATCH_ROWS: '3', MOVE_CLEANUP_DELAY_SECONDS: '3600', LIFECYCLE_SWEEP_INTERVAL_MS: '0' } });
  admin = await t.admin();
  neighbour = await createTenant(t, { tier: 'shared' });
  await seedProjects(neighbour, 3, 2);
  neighbourBefore = await contentOf(neighbour);
});
afterAll(async () => {
  await t?.close();
});

/** Everything a tenant's owner sees of its data, in a stable order. */
async function contentOf(tenant: TenantFixture): Promise<unknown> {
  const projects = (await tenant.owner.get(`/orgs/${tenant.slug}/projects?limit=100`)).body.items as Array<{ id: string }>;
  const out: unknown[] = [];
  for (const p of projects) {
    const tasks = (await tenant.owner.get(`/orgs/${tenant.slug}/projects/${p.id}/tasks?limit=100`)).body.items;
    out.push({ project: p, tasks });
  }
  return out;
}

function portOf(server: string): number {
  return server === 'secondary' ? t.harness.secondaryPort : t.harness.primaryPort;
}

/** What is left of a tenant in a placement, seen by a superuser: 'absent' when its schema or database is gone. */
async function leftIn(tenantId: string, p: { tier: Tier; serverKey: string; database: string; schema: string }): Promise<number | 'absent'> {
  const dbExists = await withSuperuser(t.harness, portOf(p.serverKey), 'postgres', async (c) =>
    (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [p.database])).rowCount === 1,
  );
  if (!dbExists) return 'absent';
  return withSuperuser(t.harness, portOf(p.serverKey), p.database, async (c) => {
    const schema = await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [p.schema]);
    if (!schema.rowCount) return 'absent';
    const { rows } = await c.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM "${p.schema}".projects WHERE organization_id = $1)::int
            + (SELECT count(*) FROM "${p.schema}".tasks WHERE organization_id = $1)::int AS n`,
      [tenantId],
    );
    return rows[0].n;
  });
}

function placementOf(tenantId: string, tier: Tier, server: string) {
  const p = placementFor(t.runtime, tenantId, tier, server);
  // The cloned test database is the primary database here.
  return p.serverKey === 'primary' && p.tier !== 'dedicated' ? { ...p, database: t.database } : p;
}

const directions: Array<[Tier, string, Tier, string]> = [
  ['shared', 'primary', 'schema', 'primary'],
  ['schema', 'primary', 'dedicated', 'secondary'],
  ['dedicated', 'secondary', 'shared', 'primary'],
  ['shared', 'primary', 'dedicated', 'primary'],
  ['dedicated', 'primary', 'dedicated', 'secondary'],
  ['dedicated', 'secondary', 'schema', 'primary'],
  ['schema', 'primary', 'shared', 'primary'],
];

describe.each(directions)('a move from %s (%s) to %s (%s)', (fromTier, fromServer, toTier, toServer) => {
  let tenant: TenantFixture;
  let before: unknown;
  let move: Record<string, any>;

  beforeAll(async () => {
    tenant = await createTenant(t, { tier: fromTier, server: fromTier === 'dedicated' ? fromServer : undefined });
    await seedProjects(tenant, 4, 2);
    // Sealed (verify seals first), so that the chain's 12 rows are there to copy.
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 12 });
    before = await contentOf(tenant);
    const started = await admin.post(`/tenants/${tenant.id}/move`, { tier: toTier, server: toTier === 'dedicated' ? toServer : undefined });
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ phase: 'pending', source: { tier: fromTier, server: fromServer }, target: { tier: toTier, server: toServer } });
    move = await waitForMove(admin, tenant.id, started.body.id);
  });

  it('verifies every table on both sides and flips the routing table', async () => {
    // 4 projects and 8 tasks, and the 12 audit entries their creation wrote with their 12 places on the chain.
    expect(move).toMatchObject({ phase: 'flipped', state: 'awaiting_cleanup', rowsTotal: 36, rowsCopied: 36, percent: 100, error: null });
    expect(move.verification.tables.audit_log.target.rows).toBe(12);
    expect(move.verification.tables.audit_chain.target.rows).toBe(12);
    expect(move.verification.ok).toBe(true);
    expect(move.verification.tables.projects.source).toEqual(move.verification.tables.projects.target);
    expect(move.verification.tables.projects.source.rows).toBe(4);
    expect(move.verification.tables.tasks.target.rows).toBe(8);
    expect(typeof move.freezeMs).toBe('number');
    const route = await admin.get(`/tenants/${tenant.id}`);
    expect(route.body.placement).toEqual({ tier: toTier, server: toServer });
  });

  it('serves the same data from the target, and takes writes there', async () => {
    expect(await contentOf(tenant)).toEqual(before);
    // The audit chain moved as it was: still valid, same head, and it goes on at the target.
    const verified = await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`);
    expect(verified.body).toMatchObject({ ok: true, entries: 12, head: { seq: 12 } });
    const created = await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: 'after the move' });
    expect(created.status).toBe(201);
    expect(await leftIn(tenant.id, placementOf(tenant.id, toTier, toServer))).toBe(13);
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 13, head: { seq: 13 } });
  });

  it('fences the source: a write that reaches it (a stale route) is refused by the database', async () => {
    const source = placementOf(tenant.id, fromTier, fromServer);
    const server = t.runtime.servers.get(fromServer)!;
    const app = new pg.Client({ host: server.host, port: server.port, user: server.appUser, password: server.appPassword, database: source.database });
    await app.connect();
    try {
      await app.query('BEGIN');
      await app.query(`SELECT set_config('app.current_org_id', $1, true), set_config('search_path', $2, true)`, [tenant.id, source.schema]);
      await expect(app.query('SELECT tenant_write_gate()')).rejects.toMatchObject({ code: 'TNM01' });
      await app.query('ROLLBACK');
    } finally {
      await app.end();
    }
  });

  it('cleans the source up and leaves other tenants alone', async () => {
    const source = placementOf(tenant.id, fromTier, fromServer);
    expect(await leftIn(tenant.id, source)).toBe(12);
    const cleaned = await admin.post(`/tenants/${tenant.id}/moves/${move.id}/cleanup`);
    expect(cleaned.status).toBe(200);
    expect(cleaned.body).toMatchObject({ phase: 'cleaned', state: 'finished' });
    expect(await leftIn(tenant.id, source)).toBe(fromTier === 'shared' ? 0 : 'absent');
    expect(await contentOf(tenant)).toHaveLength(5);
    expect(await contentOf(neighbour)).toEqual(neighbourBefore);
  });
});

describe('moving back and forth', () => {
  it('moves a tenant shared -> schema -> shared, cleaning the first move up when the second starts', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    await seedProjects(tenant, 2, 1);
    const before = await contentOf(tenant);
    const first = await admin.post(`/tenants/${tenant.id}/move`, { tier: 'schema' });
    expect((await waitForMove(admin, tenant.id, first.body.id)).phase).toBe('flipped');
    const second = await admin.post(`/tenants/${tenant.id}/move`, { tier: 'shared' });
    expect(second.status).toBe(202);
    expect((await waitForMove(admin, tenant.id, second.body.id)).phase).toBe('flipped');
    expect((await admin.get(`/tenants/${tenant.id}/moves/${first.body.id}`)).body.phase).toBe('cleaned');
    expect(await contentOf(tenant)).toEqual(before);
    // The shared rows are the tenant's again (the first move's clean-up lifted the fence there);
    // the schema of the middle stop is the second move's source, gone once that is cleaned up.
    const middle = placementOf(tenant.id, 'schema', 'primary');
    expect(await leftIn(tenant.id, middle)).toBe(4);
    expect((await admin.post(`/tenants/${tenant.id}/moves/${second.body.id}/cleanup`)).body.phase).toBe('cleaned');
    expect(await leftIn(tenant.id, middle)).toBe('absent');
    expect((await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: 'back home' })).status).toBe(201);
    const list = await admin.get(`/tenants/${tenant.id}/moves`);
    expect(list.body.items.map((m: { id: string }) => m.id)).toEqual([second.body.id, first.body.id]);
  });
});

describe('moving entries that wait to be sealed', () => {
  it('copies them as pending, seals them at the target onto the chain it copied, and leaves no queue behind', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    await seedProjects(tenant, 2, 1);
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 4 });
    // Three entries written as the app writes them (entry and queue row in one statement), with no
    // sealer told about them: still pending when the move copies.
    await withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c) => {
      await c.query('BEGIN');
      await c.query(`SELECT set_config('app.current_org_id', $1, true)`, [tenant.id]);
      await c.query(
        `WITH entry AS (
           INSERT INTO tenant_data.audit_log (id, actor_kind, actor_id, action)
           SELECT gen_random_uuid(), 'system', 'test', 'test.pending' FROM generate_series(1, 3) RETURNING id)
         INSERT INTO tenant_data.audit_pending (id) SELECT id FROM entry`,
      );
      await c.query('COMMIT');
    });
    const started = await admin.post(`/tenants/${tenant.id}/move`, { tier: 'schema' });
    expect(started.status).toBe(202);
    const move = await waitForMove(admin, tenant.id, started.body.id);
    expect(move).toMatchObject({ phase: 'flipped', error: null });
    expect(move.verification.tables.audit_log.target.rows).toBe(7);
    // Copied as they were when the move last caught up: still pending (a queue row each at the
    // target), or sealed at the source meanwhile (by a checkpoint) and copied with their places.
    const chained = move.verification.tables.audit_chain.target.rows as number;
    expect([4, 7]).toContain(chained);
    const schema = tenantObjectName(tenant.id);
    const queued = () =>
      withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c) =>
        (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".audit_pending WHERE organization_id = $1`, [tenant.id])).rows[0].n,
      );
    expect(await queued()).toBe(7 - chained);
    // Sealed at the target, after the 4 it brought along: 7 in one valid chain.
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 7, pending: 0, head: { seq: 7 } });
    expect(await queued()).toBe(0);
    const log = (await tenant.owner.get(`/orgs/${tenant.slug}/audit?limit=10`)).body.items as Array<{ seq: number; action: string }>;
    expect(log.map((e) => e.seq)).toEqual([7, 6, 5, 4, 3, 2, 1]);
    expect(log.slice(0, 3).map((e) => e.action)).toEqual(['test.pending', 'test.pending', 'test.pending']);
  });
});

describe('a move whose verification fails', () => {
  it('is failed, its target removed, and the tenant keeps serving (and writing) from its source', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    await seedProjects(tenant, 3, 1);
    const before = await contentOf(tenant);
    // Sabotage the target before the move: a trigger that alters every project written there.
    const target = placementOf(tenant.id, 'schema', 'primary');
    await preparePlacement(t.runtime, target);
    await withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c) => {
      await c.query(`CREATE FUNCTION "${target.schema}".sabotage() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.name := NEW.name || ' (corrupted)'; RETURN NEW; END $$`);
      await c.query(`CREATE TRIGGER sabotage BEFORE INSERT OR UPDATE ON "${target.schema}".projects FOR EACH ROW EXECUTE FUNCTION "${target.schema}".sabotage()`);
    });
    const started = await admin.post(`/tenants/${tenant.id}/move`, { tier: 'schema' });
    const move = await waitForMove(admin, tenant.id, started.body.id);
    expect(move).toMatchObject({ phase: 'failed', state: 'finished' });
    expect(move.error).toMatch(/verification failed \(projects: 3 rows/);
    expect(move.verification.ok).toBe(false);
    expect(move.verification.tables.tasks.ok).toBe(true);
    expect((await admin.get(`/tenants/${tenant.id}`)).body.placement).toEqual({ tier: 'shared', server: 'primary' });
    expect(await leftIn(tenant.id, target)).toBe('absent');
    expect(await contentOf(tenant)).toEqual(before);
    expect((await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: 'still writable' })).status).toBe(201);
  });
});

describe('aborting', () => {
  it('aborts a move before its flip: the target is dropped, the tenant stays and keeps writing', async () => {
    const tenant = await createTenant(t, { tier: 'schema' });
    await seedProjects(tenant, 2, 1);
    // Enough rows, in batches of 3, that the move is still copying when the abort arrives.
    await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) =>
      c.query(
        `INSERT INTO "${tenantObjectName(tenant.id)}".projects (organization_id, id, name)
         SELECT $1, gen_random_uuid(), 'bulk ' || i FROM generate_series(1, 3000) i`,
        [tenant.id],
      ),
    );
    const started = await admin.post(`/tenants/${tenant.id}/move`, { tier: 'dedicated', server: 'secondary' });
    await waitForMove(admin, tenant.id, started.body.id, (m) => m.phase === 'copying' && m.rowsCopied > 0);
    const aborted = await admin.post(`/tenants/${tenant.id}/moves/${started.body.id}/abort`);
    expect(aborted.status).toBe(200);
    expect(aborted.body).toMatchObject({ phase: 'aborted', state: 'finished', error: 'aborted by request' });
    expect(await leftIn(tenant.id, placementOf(tenant.id, 'dedicated', 'secondary'))).toBe('absent');
    expect((await admin.get(`/tenants/${tenant.id}`)).body.placement).toEqual({ tier: 'schema', server: 'primary' });
    expect((await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: 'after abort' })).status).toBe(201);
    const again = await admin.post(`/tenants/${tenant.id}/moves/${started.body.id}/abort`);
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('MOVE_STATE_CONFLICT');
  });
});

describe('refused moves', () => {
  let tenant: TenantFixture;
  beforeAll(async () => {
    tenant = await createTenant(t, { tier: 'shared' });
  });

  it('400 for a bad tier or server, naming the field', async () => {
    for (const [body, field] of [
      [{ tier: 'cloud' }, 'tier'],
      [{}, 'tier'],
      [{ tier: 'dedicated', server: 'Nope!' }, 'server'],
      [{ tier: 'dedicated', server: 'nowhere' }, 'server'],
      [{ tier: 'schema', server: 'secondary' }, 'server'],
      [{ tier: 'shared' }, 'tier'],
    ] as const) {
      const res = await admin.post(`/tenants/${tenant.id}/move`, body);
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ status: 400, field, requestId: expect.any(String) });
    }
    expect((await admin.post(`/tenants/${tenant.id}/move`, { tier: 'shared' })).body.code).toBe('MOVE_SAME_PLACEMENT');
  });

  it('404 for an unknown tenant or move, 403 for a non-admin', async () => {
    const missing = '0190a6b8-0000-7000-8000-000000000000';
    expect((await admin.post(`/tenants/${missing}/move`, { tier: 'schema' })).status).toBe(404);
    expect((await admin.get(`/tenants/${tenant.id}/moves/${missing}`)).body.code).toBe('MOVE_NOT_FOUND');
    expect((await admin.get(`/tenants/${missing}/moves`)).status).toBe(404);
    const other = await createTenant(t, { tier: 'shared' });
    const started = await admin.post(`/tenants/${other.id}/move`, { tier: 'schema' });
    // A move is only found under its own tenant.
    expect((await admin.get(`/tenants/${tenant.id}/moves/${started.body.id}`)).status).toBe(404);
    await waitForMove(admin, other.id, started.body.id);
    const res = await tenant.owner.post(`/tenants/${tenant.id}/move`, { tier: 'schema' });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('PLATFORM_ADMIN_REQUIRED');
  });

  it('409 for a second move while one is in progress, and for cleaning up a move that has not flipped', async () => {
    const busy = await createTenant(t, { tier: 'shared', slug: uniqueSlug('busy') });
    await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) =>
      c.query(
        `INSERT INTO tenant_data.projects (organization_id, id, name) SELECT $1, gen_random_uuid(), 'bulk ' || i FROM generate_series(1, 3000) i`,
        [busy.id],
      ),
    );
    const first = await admin.post(`/tenants/${busy.id}/move`, { tier: 'schema' });
    expect(first.status).toBe(202);
    const second = await admin.post(`/tenants/${busy.id}/move`, { tier: 'dedicated' });
    expect(second.status).toBe(409);
    expect(second.body.code).toBe('MOVE_IN_PROGRESS');
    const early = await admin.post(`/tenants/${busy.id}/moves/${first.body.id}/cleanup`);
    expect(early.status).toBe(409);
    expect(early.body.code).toBe('MOVE_STATE_CONFLICT');
    expect((await admin.post(`/tenants/${busy.id}/moves/${first.body.id}/resume`)).body.code).toBe('MOVE_IN_PROGRESS');
    const done = await waitForMove(admin, busy.id, first.body.id, undefined, 60_000);
    expect(done).toMatchObject({ phase: 'flipped', error: null });
  });
});

describe('the sweeper', () => {
  async function asOwner<T>(sql: string, params: unknown[]): Promise<T[]> {
    const h = t.harness;
    const c = new pg.Client({ host: '127.0.0.1', port: h.primaryPort, user: h.ownerUser, password: h.ownerPassword, database: t.database });
    await c.connect();
    try {
      return (await c.query(sql, params)).rows as T[];
    } finally {
      await c.end();
    }
  }

  it('lifts a fence left by a runner that died during its cutover, and the move can then be resumed', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    await seedProjects(tenant, 2, 1);
    // What a runner killed between fencing its source and flipping leaves behind.
    const [move] = await asOwner<{ id: string }>(
      `INSERT INTO control.tenant_moves (id, tenant_id, phase, source_tier, source_server, source_database, source_schema,
                                         target_tier, target_server, target_database, target_schema, requested_by)
       VALUES (gen_random_uuid(), $1, 'verifying', 'shared', 'primary', $2, 'tenant_data', 'schema', 'primary', $2, $3, 'test') RETURNING id`,
      [tenant.id, t.database, tenantObjectName(tenant.id)],
    );
    await withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c) => {
      await c.query(`SELECT set_config('app.current_org_id', $1, false)`, [tenant.id]);
      await c.query('INSERT INTO tenant_data.tenant_fences (move_id) VALUES ($1)', [move.id]);
    });
    const fenced = await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: 'refused' });
    expect(fenced.status).toBe(503);
    expect(fenced.body.code).toBe('TENANT_MOVED');

    await t.app.get(MovesService).sweep();
    expect((await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: 'accepted again' })).status).toBe(201);
    const after = await admin.get(`/tenants/${tenant.id}/moves/${move.id}`);
    expect(after.body).toMatchObject({ phase: 'catching_up', state: 'interrupted' });
    expect(after.body.error).toMatch(/interrupted during the cutover/);
    const resumed = await admin.post(`/tenants/${tenant.id}/moves/${move.id}/resume`);
    expect(resumed.status).toBe(202);
    expect((await waitForMove(admin, tenant.id, move.id)).phase).toBe('flipped');
    expect((await contentOf(tenant) as unknown[]).length).toBe(3);
  });

  it('cleans up the sources of moves whose delay has passed, and only those', async () => {
    const due = await createTenant(t, { tier: 'schema' });
    const notDue = await createTenant(t, { tier: 'schema' });
    const moves = [];
    for (const tenant of [due, notDue]) {
      const started = await admin.post(`/tenants/${tenant.id}/move`, { tier: 'shared' });
      moves.push(await waitForMove(admin, tenant.id, started.body.id));
    }
    await asOwner(`UPDATE control.tenant_moves SET cleanup_after = now() - interval '1 second' WHERE id = $1`, [moves[0].id]);
    await t.app.get(MovesService).sweep();
    expect((await admin.get(`/tenants/${due.id}/moves/${moves[0].id}`)).body.phase).toBe('cleaned');
    expect((await admin.get(`/tenants/${notDue.id}/moves/${moves[1].id}`)).body.phase).toBe('flipped');
    expect(await leftIn(due.id, placementOf(due.id, 'schema', 'primary'))).toBe('absent');
    expect(await leftIn(notDue.id, placementOf(notDue.id, 'schema', 'primary'))).toBe(0);
  });
});

describe('a corrupt move row', () => {
  it("never makes a clean-up drop an object that is not named after the move's tenant (the shared schema, say)", async () => {
    const tenant = await createTenant(t, { tier: 'schema' });
    const h = t.harness;
    const c = new pg.Client({ host: '127.0.0.1', port: h.primaryPort, user: h.ownerUser, password: h.ownerPassword, database: t.database });
    await c.connect();
    let moveId: string;
    try {
      moveId = (
        await c.query<{ id: string }>(
          `INSERT INTO control.tenant_moves (id, tenant_id, phase, source_tier, source_server, source_database, source_schema,
                                             target_tier, target_server, target_database, target_schema, requested_by, cleanup_after)
           VALUES (gen_random_uuid(), $1, 'flipped', 'schema', 'primary', $2, 'tenant_data', 'shared', 'primary', $2, 'tenant_data', 'test', now())
           RETURNING id`,
          [tenant.id, t.database],
        )
      ).rows[0].id;
    } finally {
      await c.end();
    }
    await expect(t.app.get(MovesService).engine.cleanup(moveId, { kind: 'system', id: 'test' })).rejects.toThrow(/not named after tenant/);
    expect(await contentOf(neighbour)).toEqual(neighbourBefore);
  });
});
