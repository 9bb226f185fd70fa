import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { quoteIdent, tenantObjectName } from '../../libs/postgres/index.js';
import { HttpClient, ownerUrl, TestResponse, withSuperuser } from '../../libs/testing/index.js';
import { LifecycleService } from '../../src/lifecycle/lifecycle.service.js';
import { LifecycleSweeper } from '../../src/lifecycle/sweeper.service.js';
import { connectToTenant } from '../../src/lifecycle/tenant-data.js';
import { placementFor, preparePlacement } from '../../src/tenancy/placements.js';
import type { Tier } from '../../src/tenancy/tenant-route.js';
import { cliEnv, runCli, tableRows } from '../support/cli-runner.js';
import { createTenant, seedProjects, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * The tenant lifecycle end to end: transitions through the API on two app instances sharing one
 * control plane, purges on every tier checked as the superuser, receipts recomputed here, the
 * sweeper of a third app, and the operators' CLI.
 */
let one: TestApp;
let two: TestApp;
let admin: HttpClient;
let adminId: string;
const JWT_SECRET = randomBytes(32).toString('hex');

beforeAll(async () => {
  // No sweeper here: purges in these tests happen when a test asks for them.
  const env = { JWT_SECRET, LIFECYCLE_SWEEP_INTERVAL_MS: '0' };
  one = await startTestApp({ env });
  two = await startTestApp({ env, database: one.database });
  admin = await one.admin();
  adminId = (await admin.get('/me')).body.id;
});
afterAll(async () => {
  await two?.close();
  await one?.close();
});

// ---------------------------------------------------------------------------------------------
// helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until the status arrives (a NOTIFY takes milliseconds; the cache TTL would take a minute). */
async function eventually(fn: () => Promise<number>, status: number, withinMs = 3_000): Promise<number> {
  const until = Date.now() + withinMs;
  let last = await fn();
  while (last !== status && Date.now() < until) {
    await sleep(25);
    last = await fn();
  }
  return last;
}

async function asOwner<T>(t: TestApp, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: ownerUrl(t.harness, t.harness.primaryPort, t.database) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function superuser<T>(t: TestApp, server: string, database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const port = server === 'secondary' ? t.harness.secondaryPort : t.harness.primaryPort;
  return withSuperuser(t.harness, port, database, fn);
}

/** Written independently of src/lifecycle/purge-receipt.ts: keys sorted at every level, no white space. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}
const sha256 = (v: unknown) => createHash('sha256').update(canonical(v), 'utf8').digest('hex');

/** The one error shape, with the code and status expected. */
function expectError(res: TestResponse, status: number, code: string, field?: string): void {
  expect(res.status).toBe(status);
  expect(res.body).toMatchObject({ status, code, message: expect.any(String), requestId: expect.any(String) });
  expect(Object.keys(res.body).sort()).toEqual(field ? ['code', 'field', 'message', 'requestId', 'status'] : ['code', 'message', 'requestId', 'status']);
  if (field) expect(res.body.field).toBe(field);
  expect(JSON.stringify(res.body)).not.toMatch(/\n\s+at /);
}

interface PlacementRow {
  id: string;
  slug: string;
  tier: Tier;
  server_key: string;
  database_name: string;
  schema_name: string;
}

async function placementsOf(t: TestApp): Promise<PlacementRow[]> {
  return asOwner(t, async (c) => (await c.query<PlacementRow>('SELECT id, slug, tier, server_key, database_name, schema_name FROM control.tenants ORDER BY id')).rows);
}

/**
 * What seedProjects leaves: the rows, and one audit entry per project and per task it created
 * through the API, each with its place on the chain once sealed (untilSealed).
 */
function seededRows(projects: number, tasksEach: number): Record<string, number> {
  const entries = projects + projects * tasksEach;
  return { audit_chain: entries, audit_log: entries, projects, tasks: projects * tasksEach };
}

/**
 * Rows per tenant table of one tenant in one schema, counted as the superuser (RLS does not apply).
 * Bookkeeping tables are not tenant data (the fences, the audit chain heads and the queue of
 * entries to seal, derived from the log): the tests check those on their own (chainHeadsIn, the
 * fences query).
 */
async function countIn(t: TestApp, server: string, database: string, schema: string, tenantId: string): Promise<Record<string, number>> {
  return superuser(t, server, database, async (c) => {
    // Entries are sealed onto the chain a moment after their write: count once the queue is empty
    // (or after 5 s), so that a count before and one after compare like with like.
    const pending = async () =>
      (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quoteIdent(schema)}.audit_pending WHERE organization_id = $1`, [tenantId])).rows[0].n;
    for (const until = Date.now() + 5_000; (await pending()) > 0 && Date.now() < until; ) await sleep(25);
    const tables = await c.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname NOT IN ('_migrations', 'tenant_fences', 'audit_chain_heads', 'audit_pending')
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'organization_id')
        ORDER BY 1`,
      [schema],
    );
    const out: Record<string, number> = {};
    for (const { name } of tables.rows) {
      const r = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quoteIdent(schema)}.${quoteIdent(name)} WHERE organization_id = $1`, [tenantId]);
      out[name] = r.rows[0].n;
    }
    return out;
  });
}

/** The tenant's audit chain head in one schema (0 or 1 row), counted as the superuser: a purge removes it with the log. */
async function chainHeadsIn(t: TestApp, server: string, database: string, schema: string, tenantId: string): Promise<number> {
  return superuser(t, server, database, async (c) =>
    (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quoteIdent(schema)}.audit_chain_heads WHERE organization_id = $1`, [tenantId])).rows[0].n,
  );
}

/**
 * Waits until the tenant's chain head in one schema covers `entries` audit entries: entries may be
 * sealed onto the chain a moment after their write, and a purge or a copy must not race that.
 */
async function untilSealed(t: TestApp, server: string, database: string, schema: string, tenantId: string, entries: number): Promise<void> {
  const headSeq = () =>
    superuser(t, server, database, async (c) =>
      Number((await c.query<{ seq: string }>(`SELECT seq FROM ${quoteIdent(schema)}.audit_chain_heads WHERE organization_id = $1`, [tenantId])).rows[0]?.seq ?? 0),
    );
  const until = Date.now() + 5_000;
  let seq = await headSeq();
  while (seq !== entries && Date.now() < until) {
    await sleep(25);
    seq = await headSeq();
  }
  expect([schema, seq]).toEqual([schema, entries]);
}

/** Every row count of every tenant but the excluded ones, wherever they live: what a purge must not touch. */
async function everyOtherTenant(t: TestApp, excluded: string[]): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const p of await placementsOf(t)) {
    if (excluded.includes(p.id)) continue;
    out[p.slug] = await countIn(t, p.server_key, p.database_name, p.schema_name, p.id);
  }
  return out;
}

async function schemaExists(t: TestApp, schema: string): Promise<boolean> {
  return superuser(t, 'primary', t.database, async (c) => ((await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rowCount ?? 0) > 0);
}

async function databaseExists(t: TestApp, server: string, database: string): Promise<boolean> {
  return superuser(t, server, 'postgres', async (c) => ((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount ?? 0) > 0);
}

/** Time passes: the grace period is over. */
async function makeDue(t: TestApp, tenantId: string): Promise<void> {
  const n = await asOwner(t, async (c) =>
    (
      await c.query(
        `UPDATE control.tenants SET deletion_requested_at = deletion_requested_at - interval '31 days', purge_after = now() - interval '1 minute'
          WHERE id = $1 AND status = 'pending_deletion'`,
        [tenantId],
      )
    ).rowCount,
  );
  expect(n).toBe(1);
}

async function auditOf(t: TestApp, tenantId: string, action?: string) {
  return asOwner(t, async (c) =>
    (
      await c.query(
        `SELECT actor_kind, actor_id, action, target_type, target_id, metadata, request_id FROM control.platform_audit_log
          WHERE tenant_id = $1 AND ($2::text IS NULL OR action = $2) ORDER BY at, id`,
        [tenantId, action ?? null],
      )
    ).rows,
  );
}

/**
 * A member besides the owner, so that membership counts are not trivially 1. Written straight
 * into the control plane: through the API it would also add an audit entry (see audit.test.ts),
 * which the row counts here leave out.
 */
async function addMember(tenant: TenantFixture): Promise<void> {
  await superuser(one, 'primary', one.database, (c) =>
    c.query(
      `WITH u AS (INSERT INTO control.users (id, email) VALUES (gen_random_uuid(), $2) RETURNING id)
       INSERT INTO control.memberships (tenant_id, user_id, role) SELECT $1, id, 'member' FROM u`,
      [tenant.id, `second@${tenant.slug}.test`],
    ),
  );
}

async function projectsOf(tenant: TenantFixture): Promise<Array<{ id: string; name: string }>> {
  const res = await tenant.owner.get(`/orgs/${tenant.slug}/projects?limit=100`);
  expect(res.status).toBe(200);
  return (res.body.items as Array<{ id: string; name: string }>).map((p) => ({ id: p.id, name: p.name })).sort((a, b) => a.id.localeCompare(b.id));
}

function tableCounts(receiptPlacement: { tables: Array<{ name: string; rowsRemoved: number }> }): Record<string, number> {
  return Object.fromEntries(receiptPlacement.tables.map((t) => [t.name, t.rowsRemoved]));
}

// ---------------------------------------------------------------------------------------------

describe('suspension', () => {
  let tenant: TenantFixture;
  let ownerOnTwo: HttpClient;

  beforeAll(async () => {
    tenant = await createTenant(one, { tier: 'schema' });
    await seedProjects(tenant, 3, 2);
    ownerOnTwo = await two.login(tenant.ownerEmail);
  });

  it('takes effect at once on both instances, and reactivation too; the data is untouched', async () => {
    const before = await projectsOf(tenant);
    expect(before).toHaveLength(3);
    // Warm the second instance's cache.
    expect((await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);
    expect((await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);

    const suspended = await admin.withHeaders({ 'x-request-id': 'lifecycle-suspend-1' }).post(`/tenants/${tenant.id}/suspend`, { reason: 'invoice 2026-031 unpaid' });
    expect(suspended.status).toBe(200);
    expect(suspended.body).toMatchObject({ id: tenant.id, status: 'suspended', statusReason: 'invoice 2026-031 unpaid', purgeAfter: null, deletionRequestedAt: null });

    // The instance that made the change answers 403 on the very next request; the other within the NOTIFY.
    const here = await tenant.owner.get(`/orgs/${tenant.slug}/projects`);
    expectError(here, 403, 'TENANT_SUSPENDED');
    expect(here.body.message).toContain('invoice 2026-031 unpaid');
    expect(await eventually(async () => (await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status, 403)).toBe(403);
    expect((await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).body.code).toBe('TENANT_SUSPENDED');

    const [event] = await auditOf(one, tenant.id, 'tenant.suspended');
    expect(event).toMatchObject({
      actor_kind: 'user',
      actor_id: adminId,
      target_type: 'tenant',
      target_id: tenant.id,
      request_id: 'lifecycle-suspend-1',
      metadata: { reason: 'invoice 2026-031 unpaid', from: 'active', to: 'suspended' },
    });

    // Suspended through one instance, reactivated through the other.
    const adminOnTwo = await two.admin();
    const reactivated = await adminOnTwo.post(`/tenants/${tenant.id}/reactivate`);
    expect(reactivated.status).toBe(200);
    expect(reactivated.body).toMatchObject({ status: 'active', statusReason: null });
    expect((await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);
    expect(await eventually(async () => (await tenant.owner.get(`/orgs/${tenant.slug}/projects`)).status, 200)).toBe(200);
    expect(await projectsOf(tenant)).toEqual(before);
    const tasks = await tenant.owner.get(`/orgs/${tenant.slug}/projects/${before[0].id}/tasks`);
    expect(tasks.body.items).toHaveLength(2);
    expect((await auditOf(one, tenant.id, 'tenant.reactivated'))[0]).toMatchObject({ actor_id: adminId, metadata: { previousReason: 'invoice 2026-031 unpaid' } });
  });
});

describe('transitions that are refused', () => {
  let tenant: TenantFixture;

  beforeAll(async () => {
    tenant = await createTenant(one, { tier: 'shared' });
  });

  async function status(): Promise<string> {
    return (await admin.get(`/tenants/${tenant.id}`)).body.status;
  }

  it('answers 409 TENANT_STATE_CONFLICT naming the current status, changes nothing and records nothing', async () => {
    const events = (await auditOf(one, tenant.id)).length;
    const refusals: Array<[string, () => Promise<TestResponse>, string]> = [
      ['reactivate an active tenant', () => admin.post(`/tenants/${tenant.id}/reactivate`), 'is active'],
      ['restore an active tenant', () => admin.post(`/tenants/${tenant.id}/restore`), 'is active'],
      ['purge an active tenant', () => admin.post(`/tenants/${tenant.id}/purge`), 'is active'],
    ];
    for (const [, call, says] of refusals) {
      const res = await call();
      expectError(res, 409, 'TENANT_STATE_CONFLICT');
      expect(res.body.message).toContain(says);
    }
    expect(await status()).toBe('active');

    expect((await admin.post(`/tenants/${tenant.id}/suspend`, { reason: 'abuse report' })).status).toBe(200);
    for (const call of [() => admin.post(`/tenants/${tenant.id}/suspend`, { reason: 'again' }), () => admin.post(`/tenants/${tenant.id}/restore`)]) {
      const res = await call();
      expectError(res, 409, 'TENANT_STATE_CONFLICT');
      expect(res.body.message).toContain('is suspended');
    }
    expect((await admin.get(`/tenants/${tenant.id}`)).body).toMatchObject({ status: 'suspended', statusReason: 'abuse report' });

    // A suspended tenant can be deleted; then only restore (or the purge, when due) applies.
    const deleted = await admin.delete(`/tenants/${tenant.id}`);
    expect(deleted.status).toBe(202);
    expect(deleted.body.status).toBe('pending_deletion');
    for (const call of [
      () => admin.delete(`/tenants/${tenant.id}`),
      () => admin.post(`/tenants/${tenant.id}/suspend`, { reason: 'x' }),
      () => admin.post(`/tenants/${tenant.id}/reactivate`),
    ]) {
      const res = await call();
      expectError(res, 409, 'TENANT_STATE_CONFLICT');
      expect(res.body.message).toContain('is pending deletion');
    }
    const early = await admin.post(`/tenants/${tenant.id}/purge`);
    expectError(early, 409, 'PURGE_NOT_DUE');
    expect(early.body.message).toContain(deleted.body.purgeAfter);
    expect(await status()).toBe('pending_deletion');
    // suspend, delete: two entries; the refusals none.
    expect((await auditOf(one, tenant.id)).map((e) => e.action).slice(events)).toEqual(['tenant.suspended', 'tenant.deletion_scheduled']);
    expect((await admin.post(`/tenants/${tenant.id}/restore`)).body.status).toBe('active');
  });

  it('refuses to delete or purge while a move is under way (409 MOVE_IN_PROGRESS)', async () => {
    const moveId = randomUUID();
    const insertMove = (id: string, phase: string) =>
      asOwner(one, (c) =>
        c.query(
          `INSERT INTO control.tenant_moves (id, tenant_id, phase, source_tier, source_server, source_database, source_schema,
                                             target_tier, target_server, target_database, target_schema, requested_by)
           VALUES ($1, $2, $3, 'shared', 'primary', $4, 'tenant_data', 'schema', 'primary', $4, $5, 'test')`,
          [id, tenant.id, phase, one.database, tenantObjectName(tenant.id)],
        ),
      );
    const setPhase = (id: string, phase: string) => asOwner(one, (c) => c.query('UPDATE control.tenant_moves SET phase = $2 WHERE id = $1', [id, phase]));
    await seedProjects(tenant, 1, 1);

    await insertMove(moveId, 'copying');
    const refused = await admin.delete(`/tenants/${tenant.id}`);
    expectError(refused, 409, 'MOVE_IN_PROGRESS');
    expect(refused.body.message).toContain('copying');
    expect((await admin.get(`/tenants/${tenant.id}`)).body.status).toBe('active');

    await setPhase(moveId, 'aborted');
    expect((await admin.delete(`/tenants/${tenant.id}`)).status).toBe(202);
    await makeDue(one, tenant.id);
    const second = randomUUID();
    await insertMove(second, 'verifying');
    // Earlier tests of this group changed this tenant too (each change has its audit entry): compare before and after.
    const before = await countIn(one, 'primary', one.database, 'tenant_data', tenant.id);
    expect(before).toMatchObject({ projects: 1, tasks: 1 });
    expectError(await admin.post(`/tenants/${tenant.id}/purge`), 409, 'MOVE_IN_PROGRESS');
    expect(await countIn(one, 'primary', one.database, 'tenant_data', tenant.id)).toEqual(before);

    await setPhase(second, 'failed');
    const purged = await admin.post(`/tenants/${tenant.id}/purge`);
    expect(purged.status).toBe(200);
    expect(tableCounts(purged.body.receipt.placements[0])).toEqual(before);
  });
});

describe('pending deletion and restore', () => {
  let tenant: TenantFixture;
  let ownerOnTwo: HttpClient;

  beforeAll(async () => {
    tenant = await createTenant(one, { tier: 'dedicated', server: 'secondary' });
    await seedProjects(tenant, 2, 2);
    ownerOnTwo = await two.login(tenant.ownerEmail);
  });

  it('closes the tenant with 403 TENANT_PENDING_DELETION and the date, until a restore brings it back intact', async () => {
    const before = await projectsOf(tenant);
    expect((await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status).toBe(200);

    const asked = Date.now();
    const deleted = await admin.delete(`/tenants/${tenant.id}`);
    expect(deleted.status).toBe(202);
    expect(deleted.body).toMatchObject({ id: tenant.id, status: 'pending_deletion' });
    const purgeAfter = Date.parse(deleted.body.purgeAfter);
    const requestedAt = Date.parse(deleted.body.deletionRequestedAt);
    // The default grace period: 30 days.
    expect(purgeAfter - requestedAt).toBe(30 * 24 * 3600 * 1000);
    expect(Math.abs(requestedAt - asked)).toBeLessThan(60_000);
    expect((await admin.get(`/tenants/${tenant.id}`)).body).toMatchObject({ status: 'pending_deletion', purgeAfter: deleted.body.purgeAfter });

    const here = await tenant.owner.get(`/orgs/${tenant.slug}/projects`);
    expectError(here, 403, 'TENANT_PENDING_DELETION');
    expect(here.body.message).toContain(`scheduled for deletion on ${deleted.body.purgeAfter}`);
    expect(here.body.message).toContain('a platform admin can restore it');
    expect(await eventually(async () => (await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status, 403)).toBe(403);
    expect((await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).body.code).toBe('TENANT_PENDING_DELETION');
    const [event] = await auditOf(one, tenant.id, 'tenant.deletion_scheduled');
    expect(event).toMatchObject({ actor_kind: 'user', actor_id: adminId, metadata: { graceDays: 30, purgeAfter: deleted.body.purgeAfter, from: 'active' } });

    const early = await admin.post(`/tenants/${tenant.id}/purge`);
    expectError(early, 409, 'PURGE_NOT_DUE');
    expect(early.body.message).toContain(deleted.body.purgeAfter);
    expect(await databaseExists(one, 'secondary', tenantObjectName(tenant.id))).toBe(true);

    const restored = await admin.post(`/tenants/${tenant.id}/restore`);
    expect(restored.status).toBe(200);
    expect(restored.body).toMatchObject({ status: 'active', purgeAfter: null, deletionRequestedAt: null });
    const row = await asOwner(one, async (c) => (await c.query('SELECT status, deletion_requested_at, purge_after FROM control.tenants WHERE id = $1', [tenant.id])).rows[0]);
    expect(row).toEqual({ status: 'active', deletion_requested_at: null, purge_after: null });
    expect(await eventually(async () => (await ownerOnTwo.get(`/orgs/${tenant.slug}/projects`)).status, 200)).toBe(200);
    expect(await projectsOf(tenant)).toEqual(before);
    expect((await auditOf(one, tenant.id, 'tenant.restored'))).toHaveLength(1);
  });
});

describe('purge', () => {
  const seeded: Record<Tier, { projects: number; tasks: number }> = {
    shared: { projects: 3, tasks: 2 },
    schema: { projects: 2, tasks: 3 },
    dedicated: { projects: 4, tasks: 1 },
  };
  const targets = new Map<Tier, TenantFixture>();
  const neighbours: TenantFixture[] = [];

  beforeAll(async () => {
    for (const tier of ['shared', 'schema', 'dedicated'] as Tier[]) {
      const t = await createTenant(one, { tier, server: tier === 'dedicated' ? 'secondary' : undefined });
      await seedProjects(t, seeded[tier].projects, seeded[tier].tasks);
      await addMember(t);
      targets.set(tier, t);
      // Someone else on the same tier (for shared: the same tables) who must keep every row.
      const n = await createTenant(one, { tier, server: tier === 'dedicated' ? 'secondary' : undefined });
      await seedProjects(n, 2, 2);
      neighbours.push(n);
    }
  });

  it.each(['shared', 'schema', 'dedicated'] as Tier[])('removes everything of a %s tenant and nothing of anyone else, with a verifiable receipt', async (tier) => {
    const t = targets.get(tier)!;
    const p = (await placementsOf(one)).find((r) => r.id === t.id)!;
    const rows = seededRows(seeded[tier].projects, seeded[tier].tasks);
    await untilSealed(one, p.server_key, p.database_name, p.schema_name, t.id, rows.audit_log);
    expect(await countIn(one, p.server_key, p.database_name, p.schema_name, t.id)).toEqual(rows);
    expect(await chainHeadsIn(one, p.server_key, p.database_name, p.schema_name, t.id)).toBe(1);
    const othersBefore = await everyOtherTenant(one, [t.id]);
    expect(Object.values(othersBefore).some((counts) => counts.projects > 0)).toBe(true);

    expect((await admin.delete(`/tenants/${t.id}`)).status).toBe(202);
    await makeDue(one, t.id);
    const res = await admin.withHeaders({ 'x-request-id': `purge-${tier}` }).post(`/tenants/${t.id}/purge`);
    expect(res.status).toBe(200);
    const { receipt } = res.body;

    // What the receipt says...
    expect(res.body.sha256).toBe(sha256(receipt));
    expect(receipt).toMatchObject({
      format: 'tenant-purge-receipt/v1',
      tenant: { id: t.id, slug: t.slug, name: `Tenant ${t.slug}`, tier, server: p.server_key, database: p.database_name, schema: p.schema_name },
      purgedBy: { kind: 'user', id: adminId },
      membershipsRemoved: 2,
      verification: { rowsRemaining: 0, objectsRemaining: 0, membershipsRemaining: 0, tenantRowsRemaining: 0, nothingLeft: true },
      earlierAttempts: [],
    });
    expect(receipt.placements).toHaveLength(1);
    expect(receipt.placements[0]).toMatchObject({ role: 'current', moveId: null, found: true, gone: true, dropped: { shared: null, schema: 'schema', dedicated: 'database' }[tier] });
    // Every tenant table (the audit log too), and no bookkeeping table: the chain head is not tenant data.
    const counts = tableCounts(receipt.placements[0]);
    expect(counts).toEqual(rows);
    // Children before parents.
    const names = receipt.placements[0].tables.map((x: { name: string }) => x.name);
    expect(names.indexOf('tasks')).toBeLessThan(names.indexOf('projects'));
    expect(receipt.rowsRemoved).toBe(Object.values(counts).reduce((a, b) => a + b, 0));
    expect(Date.parse(receipt.purgedAt)).toBeGreaterThan(Date.parse(receipt.purgeAfter));

    // ...is what happened, seen as the superuser.
    if (tier === 'shared') {
      expect(Object.values(await countIn(one, 'primary', one.database, 'tenant_data', t.id)).every((n) => n === 0)).toBe(true);
      expect(await chainHeadsIn(one, 'primary', one.database, 'tenant_data', t.id)).toBe(0);
    }
    if (tier === 'schema') expect(await schemaExists(one, p.schema_name)).toBe(false);
    if (tier === 'dedicated') expect(await databaseExists(one, 'secondary', p.database_name)).toBe(false);
    const control = await asOwner(one, async (c) =>
      (
        await c.query(
          `SELECT (SELECT count(*)::int FROM control.tenants WHERE id = $1) AS tenants,
                  (SELECT count(*)::int FROM control.memberships WHERE tenant_id = $1) AS memberships`,
          [t.id],
        )
      ).rows[0],
    );
    expect(control).toEqual({ tenants: 0, memberships: 0 });
    expect(await everyOtherTenant(one, [t.id])).toEqual(othersBefore);

    // The receipt in the platform audit log: the same, and its digest recomputes from what was stored.
    const [entry] = await auditOf(one, t.id, 'tenant.purged');
    expect(entry).toMatchObject({ actor_kind: 'user', actor_id: adminId, request_id: `purge-${tier}`, target_id: t.id });
    expect(entry.metadata.sha256).toBe(res.body.sha256);
    expect(sha256(entry.metadata.receipt)).toBe(entry.metadata.sha256);
    expect(entry.metadata.receipt).toEqual(receipt);
    // An altered receipt no longer matches.
    expect(sha256({ ...receipt, rowsRemoved: receipt.rowsRemoved - 1 })).not.toBe(entry.metadata.sha256);

    const fetched = await admin.get(`/tenants/${t.id}/purge-receipt`);
    expect(fetched.status).toBe(200);
    expect(fetched.body).toEqual(res.body);

    // Gone for everyone, on both instances.
    expectError(await admin.get(`/tenants/${t.id}`), 404, 'TENANT_NOT_FOUND', 'id');
    expect(await eventually(async () => (await (await two.login(t.ownerEmail)).get(`/orgs/${t.slug}/projects`)).status, 404)).toBe(404);
    expectError(await t.owner.get(`/orgs/${t.slug}/projects`), 404, 'TENANT_NOT_FOUND', 'slug');
    const again = await admin.post(`/tenants/${t.id}/purge`);
    expectError(again, 404, 'TENANT_NOT_FOUND', 'id');
    expect(again.body.message).toContain(`purged at ${receipt.purgedAt}`);
  });

  it('also removes the source a flipped move left behind, and marks nothing of the neighbours', async () => {
    // A tenant that moved from the shared tier to a schema: its old rows (and fence) are still in tenant_data.
    const t = await createTenant(one, { tier: 'shared' });
    await seedProjects(t, 2, 2);
    const rows = seededRows(2, 2);
    await untilSealed(one, 'primary', one.database, 'tenant_data', t.id, rows.audit_log);
    const target = placementFor(one.runtime, t.id, 'schema');
    await preparePlacement(one.runtime, target);
    const copy = await connectToTenant(one.runtime, target, t.id);
    try {
      // As a move copies: the audit log and its chain as they are, in maintenance mode.
      await copy.query(
        `SET app.audit_maintenance = 'on'; INSERT INTO projects SELECT * FROM tenant_data.projects; INSERT INTO tasks SELECT * FROM tenant_data.tasks;
         INSERT INTO audit_chain SELECT * FROM tenant_data.audit_chain; INSERT INTO audit_log SELECT * FROM tenant_data.audit_log`,
      );
    } finally {
      await copy.end();
    }
    const moveId = randomUUID();
    await asOwner(one, async (c) => {
      await c.query(
        `INSERT INTO control.tenant_moves (id, tenant_id, phase, source_tier, source_server, source_database, source_schema,
                                           target_tier, target_server, target_database, target_schema, requested_by, flipped_at)
         VALUES ($1, $2, 'flipped', 'shared', 'primary', $3, 'tenant_data', 'schema', 'primary', $3, $4, 'test', now())`,
        [moveId, t.id, one.database, target.schema],
      );
      await c.query(`UPDATE control.tenants SET tier = 'schema', schema_name = $2 WHERE id = $1`, [t.id, target.schema]);
    });
    await superuser(one, 'primary', one.database, (c) => c.query('INSERT INTO tenant_data.tenant_fences (organization_id, move_id) VALUES ($1, $2)', [t.id, moveId]));
    expect(await eventually(async () => (await t.owner.get(`/orgs/${t.slug}/projects`)).status, 200)).toBe(200);
    expect(await countIn(one, 'primary', one.database, 'tenant_data', t.id)).toEqual(rows);
    expect(await countIn(one, 'primary', one.database, target.schema, t.id)).toEqual(rows);
    // The copy brought the chain as it was: the target's head follows it.
    await untilSealed(one, 'primary', one.database, target.schema, t.id, rows.audit_log);
    expect(await chainHeadsIn(one, 'primary', one.database, 'tenant_data', t.id)).toBe(1);
    const othersBefore = await everyOtherTenant(one, [t.id]);

    // A flipped move does not hold the deletion up.
    expect((await admin.delete(`/tenants/${t.id}`)).status).toBe(202);
    await makeDue(one, t.id);
    const res = await admin.post(`/tenants/${t.id}/purge`);
    expect(res.status).toBe(200);
    const { receipt } = res.body;
    expect(res.body.sha256).toBe(sha256(receipt));
    expect(receipt.placements.map((x: { role: string; tier: string; moveId: string | null; dropped: string | null }) => [x.role, x.tier, x.moveId, x.dropped])).toEqual([
      ['current', 'schema', null, 'schema'],
      ['move_source', 'shared', moveId, null],
    ]);
    expect(tableCounts(receipt.placements[0])).toEqual(rows);
    expect(tableCounts(receipt.placements[1])).toEqual(rows);
    // 2 projects, 4 tasks and their 6 audit entries with their 6 places on the chain, in each placement.
    expect(receipt.rowsRemoved).toBe(36);
    expect(receipt.verification.nothingLeft).toBe(true);

    expect(await schemaExists(one, target.schema)).toBe(false);
    expect(await countIn(one, 'primary', one.database, 'tenant_data', t.id)).toEqual({ audit_chain: 0, audit_log: 0, projects: 0, tasks: 0 });
    const fences = await superuser(one, 'primary', one.database, async (c) => (await c.query('SELECT 1 FROM tenant_data.tenant_fences WHERE organization_id = $1', [t.id])).rowCount);
    expect(fences).toBe(0);
    expect(await chainHeadsIn(one, 'primary', one.database, 'tenant_data', t.id)).toBe(0);
    expect(await asOwner(one, async (c) => (await c.query('SELECT 1 FROM control.tenant_moves WHERE tenant_id = $1', [t.id])).rowCount)).toBe(0);
    expect(await everyOtherTenant(one, [t.id])).toEqual(othersBefore);
  });

  it('finishes on a rerun after dying between dropping the data and deleting the row, and refuses a restore meanwhile', async () => {
    const t = await createTenant(one, { tier: 'schema' });
    await seedProjects(t, 2, 1);
    await addMember(t);
    const schema = tenantObjectName(t.id);
    expect((await admin.delete(`/tenants/${t.id}`)).status).toBe(202);
    await makeDue(one, t.id);
    // The control-plane step fails after the schema is gone, as a crash there would leave it.
    const fn = `fail_purge_${randomBytes(4).toString('hex')}`;
    await asOwner(one, async (c) => {
      await c.query(`CREATE FUNCTION control.${fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'simulated crash'; END $$`);
      await c.query(`CREATE TRIGGER ${fn} BEFORE DELETE ON control.memberships FOR EACH ROW WHEN (OLD.tenant_id = '${t.id}') EXECUTE FUNCTION control.${fn}()`);
    });
    try {
      expectError(await admin.post(`/tenants/${t.id}/purge`), 500, 'INTERNAL');
    } finally {
      await asOwner(one, async (c) => {
        await c.query(`DROP TRIGGER ${fn} ON control.memberships`);
        await c.query(`DROP FUNCTION control.${fn}()`);
      });
    }
    expect(await schemaExists(one, schema)).toBe(false);
    expect((await admin.get(`/tenants/${t.id}`)).body.status).toBe('pending_deletion');
    expectError(await admin.get(`/tenants/${t.id}/purge-receipt`), 404, 'PURGE_RECEIPT_NOT_FOUND', 'id');
    // Its data may be gone: a restore would bring back an empty tenant, so it is refused.
    const restore = await admin.post(`/tenants/${t.id}/restore`);
    expectError(restore, 409, 'TENANT_STATE_CONFLICT');
    expect(restore.body.message).toContain('can no longer be restored');

    const res = await admin.post(`/tenants/${t.id}/purge`);
    expect(res.status).toBe(200);
    const { receipt } = res.body;
    expect(res.body.sha256).toBe(sha256(receipt));
    expect(receipt.placements[0]).toMatchObject({ role: 'current', found: false, dropped: null, gone: true, tables: [] });
    // 2 projects, 2 tasks and their 4 audit entries.
    expect(receipt.earlierAttempts).toEqual([{ startedAt: expect.any(String), rowsFound: 8 }]);
    expect(receipt.membershipsRemoved).toBe(2);
    expect(receipt.verification.nothingLeft).toBe(true);
    expect(await asOwner(one, async (c) => (await c.query('SELECT 1 FROM control.tenants WHERE id = $1', [t.id])).rowCount)).toBe(0);
    expect(await auditOf(one, t.id, 'tenant.purge_started')).toHaveLength(2);
  });

  it('purges each due tenant once when two instances sweep at the same time', async () => {
    const due: TenantFixture[] = [];
    for (let i = 0; i < 4; i++) {
      const t = await createTenant(one, { tier: i % 2 ? 'schema' : 'shared' });
      await seedProjects(t, 1, 1);
      expect((await admin.delete(`/tenants/${t.id}`)).status).toBe(202);
      await makeDue(one, t.id);
      due.push(t);
    }
    const [a, b] = await Promise.all([one.app.get(LifecycleService).purgeDue(), two.app.get(LifecycleService).purgeDue()]);
    expect([...a.failed, ...b.failed]).toEqual([]);
    const purged = [...a.purged, ...b.purged].map((s) => s.tenantId);
    for (const t of due) expect(purged.filter((id) => id === t.id)).toHaveLength(1);
    for (const t of due) {
      const receipts = await auditOf(one, t.id, 'tenant.purged');
      expect(receipts).toHaveLength(1);
      expect(receipts[0]).toMatchObject({ actor_kind: 'system', actor_id: 'lifecycle-sweeper' });
    }

    // Two admins purging the same tenant through both instances: one receipt; the other learns it is gone.
    const t = await createTenant(one, { tier: 'shared' });
    expect((await admin.delete(`/tenants/${t.id}`)).status).toBe(202);
    await makeDue(one, t.id);
    const adminOnTwo = await two.admin();
    const answers = await Promise.all([admin.post(`/tenants/${t.id}/purge`), adminOnTwo.post(`/tenants/${t.id}/purge`)]);
    expect(answers.map((r) => r.status).sort()).toEqual([200, 404]);
    expect(await auditOf(one, t.id, 'tenant.purged')).toHaveLength(1);
  });
});

describe('the platform audit log', () => {
  it('is append-only: the app role may not update or delete, and the owner is stopped by the trigger', async () => {
    const h = one.harness;
    const app = new pg.Client({ host: '127.0.0.1', port: h.primaryPort, user: h.appUser, password: h.appPassword, database: one.database });
    await app.connect();
    try {
      const total = (await app.query<{ n: number }>('SELECT count(*)::int AS n FROM control.platform_audit_log')).rows[0].n;
      expect(total).toBeGreaterThan(0);
      await expect(app.query(`UPDATE control.platform_audit_log SET action = 'tenant.nothing'`)).rejects.toMatchObject({ code: '42501' });
      await expect(app.query('DELETE FROM control.platform_audit_log')).rejects.toMatchObject({ code: '42501' });
      await expect(app.query('TRUNCATE control.platform_audit_log')).rejects.toMatchObject({ code: '42501' });
      await asOwner(one, async (c) => {
        await expect(c.query(`UPDATE control.platform_audit_log SET action = 'tenant.nothing'`)).rejects.toThrow(/append-only/);
        await expect(c.query('DELETE FROM control.platform_audit_log')).rejects.toThrow(/append-only/);
      });
      expect((await app.query<{ n: number }>('SELECT count(*)::int AS n FROM control.platform_audit_log')).rows[0].n).toBe(total);
    } finally {
      await app.end();
    }
  });
});

describe('the sweeper', () => {
  it('purges a due tenant by itself, one sweep at a time, despite a failing step, and stops on shutdown', async () => {
    // Same JWT secret: passport keeps one 'jwt' strategy per process, the last app's.
    const own = await startTestApp({ env: { JWT_SECRET, TENANT_DELETION_GRACE_DAYS: '0', LIFECYCLE_SWEEP_INTERVAL_MS: '100' } });
    let closed = false;
    try {
      const sweeper = own.app.get(LifecycleSweeper);
      let active = 0;
      let maxActive = 0;
      let runs = 0;
      sweeper.addStep('always fails', () => Promise.reject(new Error('boom')));
      sweeper.addStep('slow', async () => {
        active++;
        runs++;
        maxActive = Math.max(maxActive, active);
        await sleep(250);
        active--;
      });
      const t = await createTenant(own, { tier: 'shared' });
      await seedProjects(t, 2, 3);
      const neighbour = await createTenant(own, { tier: 'shared' });
      await seedProjects(neighbour, 1, 1);
      await untilSealed(own, 'primary', own.database, 'tenant_data', t.id, seededRows(2, 3).audit_log);
      await untilSealed(own, 'primary', own.database, 'tenant_data', neighbour.id, seededRows(1, 1).audit_log);
      const deleted = await (await own.admin()).delete(`/tenants/${t.id}`);
      expect(deleted.status).toBe(202);
      expect(deleted.body.purgeAfter).toBe(deleted.body.deletionRequestedAt);

      const until = Date.now() + 15_000;
      let receipts = await auditOf(own, t.id, 'tenant.purged');
      while (!receipts.length && Date.now() < until) {
        await sleep(100);
        receipts = await auditOf(own, t.id, 'tenant.purged');
      }
      expect(receipts).toHaveLength(1);
      const { receipt, sha256: digest } = receipts[0].metadata;
      expect(sha256(receipt)).toBe(digest);
      expect(receipt.purgedBy).toEqual({ kind: 'system', id: 'lifecycle-sweeper' });
      expect(tableCounts(receipt.placements[0])).toEqual(seededRows(2, 3));
      expect(await countIn(own, 'primary', own.database, 'tenant_data', t.id)).toEqual({ audit_chain: 0, audit_log: 0, projects: 0, tasks: 0 });
      expect(await chainHeadsIn(own, 'primary', own.database, 'tenant_data', t.id)).toBe(0);
      expect(await countIn(own, 'primary', own.database, 'tenant_data', neighbour.id)).toEqual(seededRows(1, 1));
      expect(await chainHeadsIn(own, 'primary', own.database, 'tenant_data', neighbour.id)).toBe(1);

      // Sweeps go on after failing steps, never overlapping.
      const seen = runs;
      await sleep(800);
      expect(runs).toBeGreaterThan(seen);
      expect(maxActive).toBe(1);

      await own.close();
      closed = true;
      const after = runs;
      await sleep(500);
      expect(runs).toBe(after);
    } finally {
      if (!closed) await own.close();
    }
  });
});

describe('the operators CLI', () => {
  let cwd: string;
  let env: Record<string, string>;

  beforeAll(() => {
    // Not the project folder: a developer's .env there must not leak into the child.
    cwd = mkdtempSync(join(tmpdir(), 'tenancy-lifecycle-cli-'));
    env = cliEnv(one.harness, one.database, JWT_SECRET);
  });
  afterAll(() => {
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  const cli = (...args: string[]) => runCli({ cwd, env, timeoutMs: 60_000 }, ...args);

  it('suspends, reactivates, deletes, restores and purges by slug, as the OS user', async () => {
    const t = await createTenant(one, { tier: 'schema' });
    await seedProjects(t, 2, 2);
    const operator = userInfo().username;

    const suspended = await cli('tenants', 'suspend', t.slug, '--reason', 'chargeback');
    expect(suspended.code).toBe(0);
    const [head, row] = tableRows(suspended.stdout);
    expect(head).toEqual(['slug', 'id', 'tier', 'server', 'status', 'reason', 'purge after']);
    expect(row).toEqual([t.slug, t.id, 'schema', 'primary', 'suspended', 'chargeback', '']);
    const blocked = await t.owner.get(`/orgs/${t.slug}/projects`);
    expectError(blocked, 403, 'TENANT_SUSPENDED');
    expect(blocked.body.message).toContain('chargeback');
    expect((await auditOf(one, t.id, 'tenant.suspended'))[0]).toMatchObject({ actor_kind: 'operator', actor_id: operator });

    const reactivated = await cli('tenants', 'reactivate', t.slug);
    expect(reactivated.code).toBe(0);
    expect(tableRows(reactivated.stdout)[1][4]).toBe('active');
    expect(await eventually(async () => (await t.owner.get(`/orgs/${t.slug}/projects`)).status, 200)).toBe(200);

    const deleted = await cli('tenants', 'delete', t.slug);
    expect(deleted.code).toBe(0);
    const deletedRow = tableRows(deleted.stdout)[1];
    expect(deletedRow[4]).toBe('pending_deletion');
    expect(deletedRow[6]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
    expect(await eventually(async () => (await t.owner.get(`/orgs/${t.slug}/projects`)).status, 403)).toBe(403);

    const early = await cli('tenants', 'purge', t.slug);
    expect(early.code).toBe(1);
    expect(early.stderr).toContain('PURGE_NOT_DUE');
    expect(early.stdout).toBe('');

    const restored = await cli('tenants', 'restore', t.slug);
    expect(restored.code).toBe(0);
    expect(tableRows(restored.stdout)[1][4]).toBe('active');
    expect(await eventually(async () => (await t.owner.get(`/orgs/${t.slug}/projects`)).status, 200)).toBe(200);
    expect(await projectsOf(t)).toHaveLength(2);

    expect((await cli('tenants', 'delete', t.slug)).code).toBe(0);
    await makeDue(one, t.id);
    // Every entry sealed (countIn waits for that), so that the count below does not depend on when.
    const p = (await placementsOf(one)).find((r) => r.id === t.id)!;
    await countIn(one, p.server_key, p.database_name, p.schema_name, t.id);
    const swept = await cli('tenants', 'purge', '--due');
    expect(swept.code).toBe(0);
    const sweptRows = tableRows(swept.stdout);
    expect(sweptRows[0]).toEqual(['slug', 'id', 'tier', 'rows removed', 'receipt sha256']);
    const mine = sweptRows.find((r) => r[0] === t.slug)!;
    // 2 projects, 4 tasks and their 6 audit entries, and the 2 entries of its suspension and
    // reactivation, each of the 8 entries with its place on the chain.
    expect(mine.slice(1, 4)).toEqual([t.id, 'schema', '22']);
    expect(swept.stderr).toMatch(/purging due tenants/);
    expect(swept.stderr).toMatch(/\d+ purged, 0 being purged by another process, 0 failed/);

    const [entry] = await auditOf(one, t.id, 'tenant.purged');
    expect(entry).toMatchObject({ actor_kind: 'operator', actor_id: operator });
    expect(mine[4]).toBe(entry.metadata.sha256);
    expect(sha256(entry.metadata.receipt)).toBe(mine[4]);
    expect(await schemaExists(one, tenantObjectName(t.id))).toBe(false);
  });

  it('purges one tenant and prints its receipt, as a table or as recorded', async () => {
    const t = await createTenant(one, { tier: 'dedicated', server: 'secondary' });
    await seedProjects(t, 1, 2);
    expect((await admin.delete(`/tenants/${t.id}`)).status).toBe(202);
    await makeDue(one, t.id);
    const res = await cli('tenants', 'purge', t.slug, '--json');
    expect(res.code).toBe(0);
    const printed = JSON.parse(res.stdout);
    expect(printed.sha256).toBe(sha256(printed.receipt));
    expect(printed.receipt.tenant).toMatchObject({ id: t.id, slug: t.slug, tier: 'dedicated', server: 'secondary' });
    expect(tableCounts(printed.receipt.placements[0])).toEqual(seededRows(1, 2));
    expect(await databaseExists(one, 'secondary', tenantObjectName(t.id))).toBe(false);

    const other = await createTenant(one, { tier: 'shared' });
    await seedProjects(other, 1, 1);
    expect((await admin.delete(`/tenants/${other.id}`)).status).toBe(202);
    await makeDue(one, other.id);
    const table = await cli('tenants', 'purge', other.slug);
    expect(table.code).toBe(0);
    const rows = tableRows(table.stdout);
    expect(rows[0]).toEqual(['where', 'what', 'removed', 'left']);
    expect(rows).toContainEqual(['shared on primary', 'tasks', '1', '0']);
    expect(rows).toContainEqual(['shared on primary', 'projects', '1', '0']);
    expect(rows).toContainEqual(['shared on primary', 'audit_log', '2', '0']);
    expect(rows).toContainEqual(['control plane', 'memberships', '1', '0']);
    const [entry] = await auditOf(one, other.id, 'tenant.purged');
    expect(table.stdout).toContain(`receipt sha256 ${entry.metadata.sha256}`);
  });

  it('refuses bad usage with exit code 2 and unknown tenants with exit code 1', async () => {
    const none = await cli('tenants', 'purge');
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--due');
    const both = await cli('tenants', 'purge', 'some-tenant', '--due');
    expect(both.code).toBe(2);
    const noReason = await cli('tenants', 'suspend', 'some-tenant');
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toContain('--reason');
    const badSlug = await cli('tenants', 'delete', 'Not_A_Slug');
    expect(badSlug.code).toBe(2);
    expect(badSlug.stderr).toContain('lowercase letters');
    const unknown = await cli('tenants', 'restore', 'no-such-tenant');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("TENANT_NOT_FOUND: tenant 'no-such-tenant' was not found");
    expect(unknown.stderr).not.toMatch(/^\s+at .+/m);
  });
});

describe('bad requests, unknown tenants and non-admins', () => {
  let tenant: TenantFixture;

  beforeAll(async () => {
    tenant = await createTenant(one, { tier: 'shared' });
  });

  const endpoints = (id: string): Array<[string, string, unknown?]> => [
    ['POST', `/tenants/${id}/suspend`, { reason: 'x' }],
    ['POST', `/tenants/${id}/reactivate`],
    ['DELETE', `/tenants/${id}`],
    ['POST', `/tenants/${id}/restore`],
    ['POST', `/tenants/${id}/purge`],
    ['GET', `/tenants/${id}/purge-receipt`],
  ];

  it('answers 400 naming the field for a malformed id or body', async () => {
    for (const [method, path, body] of endpoints('not-a-uuid')) expectError(await admin.request(method, path, body), 400, 'VALIDATION_FAILED', 'id');
    const suspend = `/tenants/${tenant.id}/suspend`;
    expectError(await admin.post(suspend, {}), 400, 'VALIDATION_FAILED', 'reason');
    expectError(await admin.post(suspend, { reason: '' }), 400, 'VALIDATION_FAILED', 'reason');
    expectError(await admin.post(suspend, { reason: 'x'.repeat(501) }), 400, 'VALIDATION_FAILED', 'reason');
    expectError(await admin.post(suspend, { reason: 42 }), 400, 'VALIDATION_FAILED', 'reason');
    expectError(await admin.post(suspend, { reason: 'ok', status: 'active' }), 400, 'VALIDATION_FAILED', 'status');
    expect((await admin.get(`/tenants/${tenant.id}`)).body.status).toBe('active');
  });

  it('answers 404 for a tenant that does not exist, and for a receipt never recorded', async () => {
    const unknown = randomUUID();
    for (const [method, path, body] of endpoints(unknown)) {
      const res = await admin.request(method, path, body);
      if (path.endsWith('purge-receipt')) expectError(res, 404, 'PURGE_RECEIPT_NOT_FOUND', 'id');
      else expectError(res, 404, 'TENANT_NOT_FOUND', 'id');
    }
    expectError(await admin.get(`/tenants/${tenant.id}/purge-receipt`), 404, 'PURGE_RECEIPT_NOT_FOUND', 'id');
  });

  it('answers 403 to anyone but a platform admin, 401 without a token, and changes nothing', async () => {
    for (const [method, path, body] of endpoints(tenant.id)) {
      expectError(await tenant.owner.request(method, path, body), 403, 'PLATFORM_ADMIN_REQUIRED');
      expectError(await one.http.request(method, path, body), 401, 'UNAUTHENTICATED');
    }
    expect((await admin.get(`/tenants/${tenant.id}`)).body.status).toBe('active');
    expect(await auditOf(one, tenant.id)).toEqual([]);
  });

  it('documents every lifecycle endpoint in the OpenAPI document', async () => {
    const doc = (await one.http.get('/docs-json')).body;
    for (const path of ['/tenants/{id}/suspend', '/tenants/{id}/reactivate', '/tenants/{id}/restore', '/tenants/{id}/purge', '/tenants/{id}/purge-receipt']) {
      expect(Object.keys(doc.paths[path] ?? {})).not.toHaveLength(0);
    }
    expect(doc.paths['/tenants/{id}'].delete.responses['202']).toBeDefined();
    expect(doc.components.schemas.TenantDto.properties.purgeAfter).toBeDefined();
    expect(doc.components.schemas.PurgeReceiptDto.properties.sha256).toBeDefined();
    expect(doc.components.schemas.SuspendTenantDto.required).toEqual(['reason']);
  });
});
