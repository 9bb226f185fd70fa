import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { fromRoot } from '../../config/paths.js';
import { loadSqlMigrations, migrateSchema, tenantObjectName } from '../../libs/postgres/index.js';
import { withSuperuser } from '../../libs/testing/index.js';
import type { Tier } from '../../src/tenancy/tenant-route.js';
import { createTenant, seedProjects, TenantFixture, uniqueSlug } from '../support/factories.js';
import { AuditService } from '../../src/audit/audit.service.js';
import { connectToTenant } from '../../src/lifecycle/tenant-data.js';
import { placementFor, preparePlacement } from '../../src/tenancy/placements.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * The tenant audit log on real PostgreSQL: every write endpoint leaves exactly one entry in the
 * same transaction (and a rolled-back change none), the app role cannot change or remove entries,
 * tampering done as a superuser (an edited field, a deleted entry (with or without its place on the chain), two swapped entries, a cut-off
 * tail) is found and the first bad entry named, and concurrent writers leave a gapless chain.
 */
let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

/** Where a tenant's rows live, for a superuser session. */
function placementOf(tenant: TenantFixture): { port: number; database: string; schema: string } {
  if (tenant.tier === 'dedicated') return { port: t.harness.secondaryPort, database: tenantObjectName(tenant.id), schema: 'tenant_data' };
  return { port: t.harness.primaryPort, database: t.database, schema: tenant.tier === 'schema' ? tenantObjectName(tenant.id) : 'tenant_data' };
}

/**
 * As a superuser, in maintenance mode (what only the platform's own tools, or an attacker with
 * superuser, can do). A superuser bypasses RLS: `:org` in the SQL stands for this tenant's id, so
 * the shared tier's other tenants are left alone.
 */
async function tamper(tenant: TenantFixture, sql: string): Promise<void> {
  const p = placementOf(tenant);
  await withSuperuser(t.harness, p.port, p.database, async (c) => {
    await c.query('BEGIN');
    await c.query(`SET LOCAL app.audit_maintenance = 'on'; SET LOCAL search_path = "${p.schema}"`);
    await c.query(sql.replaceAll(':org', `'${tenant.id}'`));
    await c.query('COMMIT');
  });
}

async function entries(tenant: TenantFixture, query = ''): Promise<Array<Record<string, any>>> {
  const res = await tenant.owner.get(`/orgs/${tenant.slug}/audit?limit=500${query}`);
  expect(res.status).toBe(200);
  return res.body.items;
}

describe('what is recorded', () => {
  let tenant: TenantFixture;
  beforeAll(async () => {
    tenant = await createTenant(t, { tier: 'shared' });
  });

  it('records every write endpoint once, with actor, target, request id, address and user agent', async () => {
    const o = tenant.owner.withHeaders({ 'user-agent': 'audit-test/1.0', 'x-request-id': 'req-audit-1' });
    const p = await o.post(`/orgs/${tenant.slug}/projects`, { name: 'Audited' });
    const task = await o.post(`/orgs/${tenant.slug}/projects/${p.body.id}/tasks`, { title: 'T' });
    await o.patch(`/orgs/${tenant.slug}/projects/${p.body.id}`, { name: 'Renamed' });
    await o.patch(`/orgs/${tenant.slug}/projects/${p.body.id}/tasks/${task.body.id}`, { status: 'done' });
    await o.delete(`/orgs/${tenant.slug}/projects/${p.body.id}/tasks/${task.body.id}`);
    await o.delete(`/orgs/${tenant.slug}/projects/${p.body.id}`);
    const log = (await entries(tenant)).reverse();
    expect(log.map((e) => [e.action, e.targetId])).toEqual([
      ['project.created', p.body.id],
      ['task.created', task.body.id],
      ['project.updated', p.body.id],
      ['task.updated', task.body.id],
      ['task.deleted', task.body.id],
      ['project.deleted', p.body.id],
    ]);
    const ownerId = (await tenant.owner.get('/me')).body.id;
    for (const e of log) {
      expect(e).toMatchObject({ actorKind: 'user', actorId: ownerId, requestId: 'req-audit-1', userAgent: 'audit-test/1.0', ip: '127.0.0.1', hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    }
    expect(log.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(log[2].metadata).toEqual({ fields: ['name'] });
    // Refused and failed writes leave nothing.
    expect((await o.patch(`/orgs/${tenant.slug}/projects/${p.body.id}`, { name: 'gone' })).status).toBe(404);
    expect((await o.post(`/orgs/${tenant.slug}/projects`, { name: '' })).status).toBe(400);
    expect(await entries(tenant)).toHaveLength(6);
  });

  it('filters by action, actor, target and time, pages by keyset, and exports NDJSON and CSV', async () => {
    await seedProjects(tenant, 3, 0);
    const all = await entries(tenant);
    expect((await entries(tenant, '&action=project.created')).every((e) => e.action === 'project.created')).toBe(true);
    expect(await entries(tenant, `&targetId=${all[0].targetId}`)).toEqual(all.filter((e) => e.targetId === all[0].targetId));
    expect(await entries(tenant, '&actor=someone-else')).toEqual([]);
    const cut = all[2].createdAt;
    expect((await entries(tenant, `&from=${encodeURIComponent(cut)}`)).map((e) => e.seq)).toEqual(all.filter((e) => e.createdAt >= cut).map((e) => e.seq));
    const first = await tenant.owner.get(`/orgs/${tenant.slug}/audit?limit=4`);
    const second = await tenant.owner.get(`/orgs/${tenant.slug}/audit?limit=4&cursor=${first.body.nextCursor}`);
    expect([...first.body.items, ...second.body.items].map((e: { seq: number }) => e.seq)).toEqual(all.slice(0, 8).map((e) => e.seq));
    const ndjson = await fetch(`${t.http.baseUrl}/orgs/${tenant.slug}/audit/export`, { headers: { authorization: `Bearer ${tenant.owner.token}` } });
    expect(ndjson.headers.get('content-type')).toContain('application/x-ndjson');
    expect((await ndjson.text()).trim().split('\n').map((l) => JSON.parse(l).seq)).toEqual(all.map((e) => e.seq));
    const csv = await fetch(`${t.http.baseUrl}/orgs/${tenant.slug}/audit/export?format=csv&action=project.created`, { headers: { authorization: `Bearer ${tenant.owner.token}` } });
    const lines = (await csv.text()).trim().split('\n');
    expect(lines[0]).toBe('seq,id,createdAt,actorKind,actorId,action,targetType,targetId,requestId,ip,userAgent,metadata,hash');
    expect(lines).toHaveLength(1 + all.filter((e) => e.action === 'project.created').length);
    for (const [q, field] of [['?limit=0', 'limit'], ['?from=yesterday', 'from'], ['?action=DROP', 'action'], ['?cursor=x', 'cursor'], ['/export?format=xml', 'format']]) {
      const res = await tenant.owner.get(`/orgs/${tenant.slug}/audit${q}`);
      expect(res.status).toBe(400);
      expect(res.body.field).toBe(field);
    }
  });

  it('is for owners and admins only, and each tenant sees its own entries only', async () => {
    const member = await t.login(`member@${uniqueSlug('m')}.test`);
    await tenant.owner.post(`/orgs/${tenant.slug}/members`, { email: (await member.get('/me')).body.email, role: 'member' });
    expect((await member.get(`/orgs/${tenant.slug}/audit`)).status).toBe(403);
    expect((await member.get(`/orgs/${tenant.slug}/audit/verify`)).status).toBe(403);
    const neighbour = await createTenant(t, { tier: 'shared' });
    await seedProjects(neighbour, 2, 0);
    expect((await neighbour.owner.get(`/orgs/${tenant.slug}/audit`)).status).toBe(404);
    const mine = await entries(neighbour);
    expect(mine.map((e) => e.seq)).toEqual([2, 1]);
  });
});

describe('transactions', () => {
  it('a change that rolls back leaves no entry, and an entry that cannot be written undoes the change', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    const [project] = await seedProjects(tenant, 1, 0);
    // Fails at COMMIT, after both the change and its entry were written: both must go.
    await withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c) => {
      await c.query(`CREATE OR REPLACE FUNCTION tenant_data.doomed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.name = 'doomed' THEN RAISE EXCEPTION 'refused at commit' USING ERRCODE = '23514'; END IF; RETURN NULL; END $$`);
      await c.query('DROP TRIGGER IF EXISTS doomed ON tenant_data.projects');
      await c.query('CREATE CONSTRAINT TRIGGER doomed AFTER UPDATE ON tenant_data.projects DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tenant_data.doomed()');
    });
    try {
      const before = await entries(tenant);
      const res = await tenant.owner.patch(`/orgs/${tenant.slug}/projects/${project.id}`, { name: 'doomed' });
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect((await tenant.owner.get(`/orgs/${tenant.slug}/projects/${project.id}`)).body.name).toBe(project.name);
      expect(await entries(tenant)).toEqual(before);
    } finally {
      await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) => c.query('DROP TRIGGER doomed ON tenant_data.projects'));
    }
    // The other way round: an entry that cannot be written (a superuser's check on audit_log) takes the change with it.
    await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) =>
      c.query(`ALTER TABLE tenant_data.audit_log ADD CONSTRAINT no_deletes_today CHECK (action <> 'project.deleted') NOT VALID`),
    );
    try {
      expect((await tenant.owner.delete(`/orgs/${tenant.slug}/projects/${project.id}`)).status).toBeGreaterThanOrEqual(400);
      expect((await tenant.owner.get(`/orgs/${tenant.slug}/projects/${project.id}`)).status).toBe(200);
    } finally {
      await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) => c.query('ALTER TABLE tenant_data.audit_log DROP CONSTRAINT no_deletes_today'));
    }
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true });
  });

  it('many parallel writes to one tenant leave a valid chain without gaps', async () => {
    const tenant = await createTenant(t, { tier: 'schema' });
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: `parallel ${i}` })));
    expect(results.every((r) => r.status === 201)).toBe(true);
    const log = await entries(tenant);
    expect(log.map((e) => e.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 40, head: { seq: 40 } });
  });

  it('sealers racing each other and the writers (several instances) seal every entry exactly once, in one gapless chain', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    const server = t.runtime.primary;
    const connect = async () => {
      const c = new pg.Client({ host: server.host, port: server.port, user: server.appUser, password: server.appPassword, database: t.database });
      await c.connect();
      return c;
    };
    const clients = await Promise.all(Array.from({ length: 5 }, connect));
    const inTenant = async (c: pg.Client, sql: string) => {
      await c.query('BEGIN');
      await c.query(`SELECT set_config('app.current_org_id', $1, true)`, [tenant.id]);
      const { rows } = await c.query(sql);
      await c.query('COMMIT');
      return rows;
    };
    // As the app writes entries (the entry and its queue row in one statement), 20 at a time.
    const write = (c: pg.Client) =>
      inTenant(
        c,
        `WITH entry AS (
           INSERT INTO tenant_data.audit_log (id, actor_kind, actor_id, action) SELECT gen_random_uuid(), 'system', 'test', 'test.race' FROM generate_series(1, 20) RETURNING id)
         INSERT INTO tenant_data.audit_pending (id) SELECT id FROM entry`,
      );
    const seal = async (c: pg.Client) => Number((await inTenant(c, `SELECT tenant_data.audit_seal('${tenant.id}', 10) AS n`))[0].n);
    try {
      let sealed = 0;
      for (let round = 0; round < 10; round++) {
        // Two writers and three sealers at once; each sealer takes at most 10 a call, so that they take different entries.
        const [, , ...counts] = await Promise.all([write(clients[0]), write(clients[1]), seal(clients[2]), seal(clients[3]), seal(clients[4])]);
        sealed += counts.reduce((a, b) => a + b, 0);
      }
      for (let n = await seal(clients[2]); n > 0; n = await seal(clients[2])) sealed += n;
      expect(sealed).toBe(400);
      expect(await inTenant(clients[2], 'SELECT count(*)::int AS n FROM tenant_data.audit_pending')).toEqual([{ n: 0 }]);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 400, pending: 0, head: { seq: 400 } });
  });
});

describe('append-only', () => {
  it("refuses the app role's UPDATE and DELETE with a database error, and the owner's without maintenance mode", async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    await seedProjects(tenant, 1, 0);
    // Sealed, so that the chain has a row to refuse changes to.
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 1 });
    const server = t.runtime.primary;
    const attempt = async (user: string, password: string) => {
      const c = new pg.Client({ host: server.host, port: server.port, user, password, database: t.database });
      await c.connect();
      try {
        await c.query(`SELECT set_config('app.current_org_id', $1, false)`, [tenant.id]);
        const errors: string[] = [];
        for (const sql of [
          `UPDATE tenant_data.audit_log SET action = 'project.hidden'`,
          'DELETE FROM tenant_data.audit_log',
          'TRUNCATE tenant_data.audit_log',
          'UPDATE tenant_data.audit_chain SET seq = seq + 1',
          'DELETE FROM tenant_data.audit_chain',
          'TRUNCATE tenant_data.audit_chain',
        ]) {
          errors.push(await c.query(sql).then(() => 'allowed', (err: { code?: string }) => err.code ?? 'error'));
        }
        return errors;
      } finally {
        await c.end();
      }
    };
    expect(await attempt(server.appUser, server.appPassword)).toEqual(Array(6).fill('42501'));
    // Nor can it give an entry a place on the chain, its own time, or take entries off the queue
    // of those waiting to be sealed.
    const app = new pg.Client({ host: server.host, port: server.port, user: server.appUser, password: server.appPassword, database: t.database });
    await app.connect();
    try {
      await app.query(`SELECT set_config('app.current_org_id', $1, false)`, [tenant.id]);
      // Nor forge the checkpoint that would hide a cut-off tail.
      await expect(
        app.query(`INSERT INTO control.audit_checkpoints (id, tenant_id, seq, hash, source) VALUES (gen_random_uuid(), $1, 1, repeat('0', 64), 'forged')`, [tenant.id]),
      ).rejects.toMatchObject({ code: '42501' });
      await expect(
        app.query(`INSERT INTO tenant_data.audit_log (id, actor_kind, action, created_at) VALUES (gen_random_uuid(), 'user', 'forged.entry', '2001-01-01')`),
      ).rejects.toMatchObject({ code: '42501' });
      await expect(
        app.query(
          `INSERT INTO tenant_data.audit_chain (seq, entry_id, prev_hash, hash) SELECT 99, id, '\\x', '\\x00' FROM tenant_data.audit_log LIMIT 1`,
        ),
      ).rejects.toMatchObject({ code: '42501' });
      for (const sql of ['DELETE FROM tenant_data.audit_pending', `UPDATE tenant_data.audit_pending SET id = gen_random_uuid()`, 'TRUNCATE tenant_data.audit_pending']) {
        await expect(app.query(sql)).rejects.toMatchObject({ code: '42501' });
      }
    } finally {
      await app.end();
    }
    expect(await attempt(server.ownerUser, server.ownerPassword)).toEqual(Array(6).fill('42501'));
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 1 });
  });
});

describe.each(['shared', 'schema', 'dedicated'] as Tier[])('tampering on a %s tenant, found by GET /audit/verify', (tier) => {
  async function tenantWith(n: number): Promise<TenantFixture> {
    const tenant = await createTenant(t, { tier });
    await seedProjects(tenant, n, 0);
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: n, head: { seq: n } });
    return tenant;
  }
  const verify = async (tenant: TenantFixture) => (await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body;
  /** The id of the entry at a place on the chain, as SQL. */
  const entryAt = (seq: number) => `SELECT entry_id FROM audit_chain WHERE organization_id = :org AND seq = ${seq}`;

  it('an edited field', async () => {
    const tenant = await tenantWith(5);
    await tamper(tenant, `UPDATE audit_log SET metadata = '{"fields":["nothing"]}' WHERE organization_id = :org AND id = (${entryAt(3)})`);
    expect(await verify(tenant)).toMatchObject({ ok: false, firstBreak: { seq: 3, reason: 'hash_mismatch' } });
  });

  it('a deleted entry', async () => {
    const tenant = await tenantWith(5);
    // With its place on the chain, as an attacker who knows the layout would.
    await tamper(
      tenant,
      `WITH gone AS (DELETE FROM audit_chain WHERE organization_id = :org AND seq = 2 RETURNING entry_id)
       DELETE FROM audit_log WHERE organization_id = :org AND id IN (SELECT entry_id FROM gone)`,
    );
    expect(await verify(tenant)).toMatchObject({ ok: false, firstBreak: { seq: 3, reason: 'sequence_gap' } });
  });

  it('an entry deleted from under its place on the chain', async () => {
    const tenant = await tenantWith(5);
    const id = (await entries(tenant)).find((e) => e.seq === 2)!.id;
    await tamper(tenant, `DELETE FROM audit_log WHERE organization_id = :org AND id = (${entryAt(2)})`);
    expect(await verify(tenant)).toMatchObject({ ok: false, firstBreak: { seq: 2, id, reason: 'hash_mismatch' } });
  });

  it('two swapped entries', async () => {
    const tenant = await tenantWith(5);
    await tamper(
      tenant,
      `UPDATE audit_chain SET seq = -2 WHERE organization_id = :org AND seq = 2;
       UPDATE audit_chain SET seq = 2 WHERE organization_id = :org AND seq = 3;
       UPDATE audit_chain SET seq = 3 WHERE organization_id = :org AND seq = -2`,
    );
    expect(await verify(tenant)).toMatchObject({ ok: false, firstBreak: { seq: 2, reason: 'hash_mismatch' } });
  });

  it('a cut-off tail, even with the chain head rewritten to match', async () => {
    const tenant = await tenantWith(6);
    await tamper(
      tenant,
      `WITH gone AS (DELETE FROM audit_chain WHERE organization_id = :org AND seq > 4 RETURNING entry_id)
       DELETE FROM audit_log WHERE organization_id = :org AND id IN (SELECT entry_id FROM gone);
       UPDATE audit_chain_heads SET seq = 4, hash = (SELECT hash FROM audit_chain WHERE organization_id = :org AND seq = 4) WHERE organization_id = :org`,
    );
    expect(await verify(tenant)).toMatchObject({ ok: false, entries: 4, firstBreak: { seq: 5, reason: 'truncated' }, checkpoint: { seq: 6 } });
  });

  it('a tail cut off the chain alone (its entries kept), with the head rewritten: found, and not sealed over', async () => {
    const tenant = await tenantWith(6);
    await tamper(
      tenant,
      `DELETE FROM audit_chain WHERE organization_id = :org AND seq > 4;
       UPDATE audit_chain_heads SET seq = 4, hash = (SELECT hash FROM audit_chain WHERE organization_id = :org AND seq = 4) WHERE organization_id = :org`,
    );
    // The two entries without a place look like ones an older app instance left unqueued; the
    // verification must not put them back on the chain (which would erase the cut).
    const found = { ok: false, entries: 4, pending: 2, firstBreak: { seq: 5, reason: 'truncated' }, checkpoint: { seq: 6 } };
    expect(await verify(tenant)).toMatchObject(found);
    expect(await verify(tenant)).toMatchObject(found);
  });
});

describe('writes of the other modules, and refused attempts', () => {
  it("records member and role changes and lifecycle transitions in the tenant's log", async () => {
    const tenant = await createTenant(t, { tier: 'schema' });
    const email = `someone@${uniqueSlug('x')}.test`;
    const added = await tenant.owner.post(`/orgs/${tenant.slug}/members`, { email, role: 'member' });
    expect(added.status).toBe(201);
    await tenant.owner.patch(`/orgs/${tenant.slug}/members/${added.body.userId}`, { role: 'viewer' });
    await tenant.owner.delete(`/orgs/${tenant.slug}/members/${added.body.userId}`);
    const admin = await t.admin();
    expect((await admin.post(`/tenants/${tenant.id}/suspend`, { reason: 'audit test' })).status).toBe(200);
    expect((await admin.post(`/tenants/${tenant.id}/reactivate`)).status).toBe(200);
    const log = (await entries(tenant)).reverse();
    expect(log.map((e) => [e.action, e.targetId])).toEqual([
      ['member.added', added.body.userId],
      ['member.role_changed', added.body.userId],
      ['member.removed', added.body.userId],
      [expect.stringMatching(/^tenant\.suspend/), tenant.id],
      [expect.stringMatching(/^tenant\.reactivat/), tenant.id],
    ]);
    expect(log[1].metadata).toEqual({ role: 'viewer' });
    expect(log[3].actorId).toBe((await admin.get('/me')).body.id);
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 5 });
  });

  it('records an attempt to reach into another tenant in the platform log, once a minute per person and tenant', async () => {
    const target = await createTenant(t, { tier: 'shared' });
    const intruder = await t.login(`intruder@${uniqueSlug('x')}.test`);
    for (let i = 0; i < 3; i++) expect((await intruder.get(`/orgs/${target.slug}/projects`)).status).toBe(404);
    const intruderId = (await intruder.get('/me')).body.id;
    const c = new pg.Client({ host: t.runtime.primary.host, port: t.runtime.primary.port, user: t.runtime.primary.ownerUser, password: t.runtime.primary.ownerPassword, database: t.database });
    await c.connect();
    try {
      let rows: Array<{ metadata: Record<string, unknown> }> = [];
      for (let i = 0; i < 50 && rows.length === 0; i++) {
        rows = (await c.query(`SELECT metadata FROM control.platform_audit_log WHERE action = 'access.cross_tenant_refused' AND actor_id = $1 AND tenant_id = $2`, [intruderId, target.id])).rows;
        if (!rows.length) await new Promise((r) => setTimeout(r, 20));
      }
      expect(rows).toEqual([{ metadata: { method: 'GET', path: `/orgs/${target.slug}/projects` } }]);
    } finally {
      await c.end();
    }
  });
});

describe('entries of control-plane changes', () => {
  it('commit with their change even when the tenant log cannot take them yet, and arrive once later', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) =>
      c.query(`ALTER TABLE tenant_data.audit_log ADD CONSTRAINT not_now CHECK (action <> 'member.added') NOT VALID`),
    );
    let userId: string;
    try {
      const added = await tenant.owner.post(`/orgs/${tenant.slug}/members`, { email: `later@${uniqueSlug('x')}.test`, role: 'member' });
      expect(added.status).toBe(201);
      userId = added.body.userId;
      expect((await entries(tenant)).filter((e) => e.action === 'member.added')).toEqual([]);
    } finally {
      await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) => c.query('ALTER TABLE tenant_data.audit_log DROP CONSTRAINT not_now'));
    }
    const audit = t.app.get(AuditService);
    expect(await audit.deliverAll()).toBeGreaterThanOrEqual(1);
    expect(await audit.deliverAll()).toBe(0);
    const delivered = (await entries(tenant)).filter((e) => e.action === 'member.added');
    expect(delivered).toEqual([expect.objectContaining({ targetId: userId!, metadata: { role: 'member' } })]);
  });
});

describe('tenant migration 0004 (the chain moves out of the entries)', () => {
  it('keeps every chain sealed before it, queues what was not sealed yet, and the chain goes on', async () => {
    const server = t.runtime.primary;
    const owner = new pg.Client({ host: server.host, port: server.port, user: server.ownerUser, password: server.ownerPassword, database: t.database });
    await owner.connect();
    const schema = `audit_migration_${randomUUID().slice(0, 8)}`;
    const all = loadSqlMigrations(fromRoot('migrations', 'tenant'));
    const [a, b] = [randomUUID(), randomUUID()];
    const write = async (org: string, n: number) => {
      await owner.query('BEGIN');
      await owner.query(`SELECT set_config('app.current_org_id', $1, true)`, [org]);
      await owner.query(`INSERT INTO "${schema}".audit_log (id, actor_kind, actor_id, action) SELECT gen_random_uuid(), 'system', 'test', 'test.before' FROM generate_series(1, $1::int)`, [n]);
      await owner.query('COMMIT');
    };
    const seal = async (org: string) => {
      await owner.query('BEGIN');
      await owner.query(`SELECT set_config('app.current_org_id', $1, true)`, [org]);
      const { rows } = await owner.query<{ n: number }>(`SELECT "${schema}".audit_seal($1) AS n`, [org]);
      await owner.query('COMMIT');
      return rows[0].n;
    };
    try {
      // As the migrator runs (the owner role, under row-level security), up to 0003: two tenants,
      // one fully sealed, one with an entry written after its last seal.
      await migrateSchema(owner, schema, all.filter((m) => m.name < '0004'));
      await write(a, 3);
      await write(b, 2);
      expect([await seal(a), await seal(b)]).toEqual([3, 2]);
      await write(b, 1);
      await owner.query(`ALTER TABLE "${schema}".audit_log NO FORCE ROW LEVEL SECURITY`);
      const sealedBefore = (await owner.query(`SELECT organization_id, seq, id, encode(hash, 'hex') AS hash FROM "${schema}".audit_log WHERE seq IS NOT NULL ORDER BY 1, 2`)).rows;
      await owner.query(`ALTER TABLE "${schema}".audit_log FORCE ROW LEVEL SECURITY`);
      expect(sealedBefore).toHaveLength(5);

      expect(await migrateSchema(owner, schema, all)).toEqual(all.filter((m) => m.name >= '0004').map((m) => m.name));
      // Owner without a tenant set: RLS shows it nothing, so read each tenant's rows as that tenant.
      const rowsOf = async (org: string, sql: string) => {
        await owner.query('BEGIN');
        await owner.query(`SELECT set_config('app.current_org_id', $1, true)`, [org]);
        const { rows } = await owner.query(sql);
        await owner.query('COMMIT');
        return rows;
      };
      const chain = [
        ...(await rowsOf(a, `SELECT organization_id, seq, entry_id AS id, encode(hash, 'hex') AS hash FROM "${schema}".audit_chain ORDER BY seq`)),
        ...(await rowsOf(b, `SELECT organization_id, seq, entry_id AS id, encode(hash, 'hex') AS hash FROM "${schema}".audit_chain ORDER BY seq`)),
      ];
      expect(chain).toEqual([...sealedBefore].sort((x, y) => (x.organization_id === a ? -1 : 1) - (y.organization_id === a ? -1 : 1) || Number(x.seq) - Number(y.seq)));
      expect(await rowsOf(b, `SELECT count(*)::int AS n FROM "${schema}".audit_pending`)).toEqual([{ n: 1 }]);
      expect(await rowsOf(a, `SELECT count(*)::int AS n FROM "${schema}".audit_pending`)).toEqual([{ n: 0 }]);
      // The entry left unsealed goes on the chain that was there, which recomputes from its start.
      expect([await seal(a), await seal(b)]).toEqual([0, 1]);
      for (const [org, n] of [[a, 3], [b, 3]] as const) {
        const recomputed = await rowsOf(
          org,
          `SELECT c.seq::int AS seq, c.hash = sha256(coalesce(lag(c.hash) OVER (ORDER BY c.seq), '\\x'::bytea) || "${schema}".audit_canonical(e, c.seq)) AS ok
             FROM "${schema}".audit_chain c JOIN "${schema}".audit_log e ON e.organization_id = c.organization_id AND e.id = c.entry_id ORDER BY c.seq`,
        );
        expect(recomputed).toEqual(Array.from({ length: n }, (_, i) => ({ seq: i + 1, ok: true })));
      }
    } finally {
      await owner.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
      await owner.end();
    }
  });
});

describe('entries written without a queue row (an app instance older than tenant migration 0004, during a rolling deploy)', () => {
  it.each(['shared', 'schema', 'dedicated'] as Tier[])('are queued and sealed by the next verification, and listed from then on (%s)', async (tier) => {
    const tenant = await createTenant(t, { tier });
    await seedProjects(tenant, 2, 0);
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 2, pending: 0 });
    // As the code before 0004 wrote an entry: the row alone, as the app role, under its tenant.
    const p = placementOf(tenant);
    const orphan = randomUUID();
    await withSuperuser(t.harness, p.port, p.database, async (c) => {
      await c.query('BEGIN');
      await c.query(`SET LOCAL ROLE ${t.runtime.primary.appUser}`);
      await c.query(`SELECT set_config('app.current_org_id', $1, true)`, [tenant.id]);
      await c.query(
        `INSERT INTO "${p.schema}".audit_log (id, actor_kind, actor_id, action, target_type, target_id) VALUES ($1, 'user', 'old-instance', 'project.created', 'project', 'p-old')
         ON CONFLICT (organization_id, id) DO NOTHING`,
        [orphan],
      );
      await c.query('COMMIT');
    });
    const verified = await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`);
    expect(verified.body).toMatchObject({ ok: true, entries: 3, pending: 0 });
    const listed = (await entries(tenant)).find((e) => e.id === orphan);
    expect(listed).toMatchObject({ seq: 3, action: 'project.created', actorId: 'old-instance' });
    // Once queued it is sealed once: a second verification finds nothing more to do.
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 3, pending: 0 });
  });
});

describe("copies made by the platform's data tools (a move)", () => {
  it('rebuild the target\'s queue of entries to seal and its chain head from what they copy, chain first', async () => {
    const tenant = await createTenant(t, { tier: 'shared' });
    await seedProjects(tenant, 2, 1);
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`)).body).toMatchObject({ ok: true, entries: 4 });
    // Two more entries, written as the app writes them and not sealed yet.
    const pendingIds = await withSuperuser(t.harness, t.harness.primaryPort, t.database, async (c) => {
      await c.query('BEGIN');
      await c.query(`SELECT set_config('app.current_org_id', $1, true)`, [tenant.id]);
      const { rows } = await c.query<{ id: string }>(
        `WITH entry AS (
           INSERT INTO tenant_data.audit_log (id, actor_kind, actor_id, action) SELECT gen_random_uuid(), 'system', 'test', 'test.pending' FROM generate_series(1, 2) RETURNING id)
         INSERT INTO tenant_data.audit_pending (id) SELECT id FROM entry RETURNING id`,
      );
      await c.query('COMMIT');
      return rows.map((r) => r.id).sort();
    });
    const target = { ...placementFor(t.runtime, tenant.id, 'schema'), database: t.database };
    await preparePlacement(t.runtime, target);
    const copy = await connectToTenant(t.runtime, target, tenant.id);
    try {
      // In the order a move copies (tenant tables by name: the chain before the entries).
      await copy.query(`SET app.audit_maintenance = 'on'`);
      await copy.query('INSERT INTO audit_chain SELECT * FROM tenant_data.audit_chain');
      await copy.query('INSERT INTO audit_log SELECT * FROM tenant_data.audit_log');
      expect((await copy.query<{ id: string }>('SELECT id FROM audit_pending ORDER BY id')).rows.map((r) => r.id)).toEqual(pendingIds);
      expect((await copy.query('SELECT seq FROM audit_chain_heads')).rows).toEqual([{ seq: '4' }]);
      // Sealed there, they go on the chain it copied.
      expect((await copy.query<{ n: number }>('SELECT audit_seal($1) AS n', [tenant.id])).rows[0].n).toBe(2);
      const chain = await copy.query<{ seq: string; ok: boolean }>(
        `SELECT c.seq, c.hash = sha256(coalesce(lag(c.hash) OVER (ORDER BY c.seq), '\\x'::bytea) || audit_canonical(a, c.seq)) AS ok
           FROM audit_chain c JOIN audit_log a ON a.organization_id = c.organization_id AND a.id = c.entry_id ORDER BY c.seq`,
      );
      expect(chain.rows).toEqual([1, 2, 3, 4, 5, 6].map((n) => ({ seq: String(n), ok: true })));
      expect((await copy.query('SELECT count(*)::int AS n FROM audit_pending')).rows).toEqual([{ n: 0 }]);
    } finally {
      await copy.end();
      await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) => c.query(`DROP SCHEMA "${target.schema}" CASCADE`));
    }
  });
});

describe('audit_seal() from the app role', () => {
  it('seals only the tenant its transaction is confined to, and cannot be tricked by temporary tables', async () => {
    const a = await createTenant(t, { tier: 'shared' });
    const b = await createTenant(t, { tier: 'shared' });
    const server = t.runtime.primary;
    const c = new pg.Client({ host: server.host, port: server.port, user: server.appUser, password: server.appPassword, database: t.database });
    await c.connect();
    try {
      await c.query('BEGIN');
      await c.query(`SELECT set_config('app.current_org_id', $1, true)`, [a.id]);
      await expect(c.query('SELECT tenant_data.audit_seal($1)', [b.id])).rejects.toMatchObject({ code: '42501' });
      await c.query('ROLLBACK');
      // Tables by the function's names in the caller's temporary schema must not be what it writes.
      await c.query('BEGIN');
      await c.query(`SELECT set_config('app.current_org_id', $1, true)`, [a.id]);
      await c.query('CREATE TEMP TABLE audit_log (LIKE tenant_data.audit_log INCLUDING DEFAULTS) ON COMMIT DROP');
      await c.query('CREATE TEMP TABLE audit_chain_heads (organization_id uuid PRIMARY KEY, seq bigint, hash bytea) ON COMMIT DROP');
      await c.query(`INSERT INTO pg_temp.audit_log (organization_id, id, actor_kind, action, metadata) VALUES ($1, gen_random_uuid(), 'user', 'planted.entry', '{}')`, [a.id]);
      const sealed = await c.query<{ n: number }>('SELECT tenant_data.audit_seal($1) AS n', [a.id]);
      expect(sealed.rows[0].n).toBe(0);
      expect((await c.query('SELECT count(*)::int AS n FROM pg_temp.audit_chain_heads')).rows[0].n).toBe(0);
      await c.query('ROLLBACK');
    } finally {
      await c.end();
    }
  });
});

describe('one connection, many schemas', () => {
  // The audit insert is a named prepared statement (parsed once per connection). PostgreSQL
  // re-parses it when search_path changes, so a schema tenant's entry must land in its own schema
  // even on a connection that last served another schema tenant: with one connection in the pool,
  // every request below reuses it.
  let single: TestApp;
  afterAll(async () => {
    await single?.close();
  });

  it('writes each schema tenant\'s entries into its own log when one pooled connection serves them in turn', async () => {
    single = await startTestApp({ env: { DB_POOL_MAX: '1', LIFECYCLE_SWEEP_INTERVAL_MS: '0' } });
    const [x, y] = [await createTenant(single, { tier: 'schema' }), await createTenant(single, { tier: 'schema' })];
    const made: Record<string, string[]> = { [x.slug]: [], [y.slug]: [] };
    for (let i = 0; i < 6; i++) {
      for (const tenant of [x, y, x]) {
        const res = await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: `p${i}` });
        expect(res.status).toBe(201);
        made[tenant.slug].push(res.body.id);
      }
    }
    for (const tenant of [x, y]) {
      const entries = await withSuperuser(single.harness, single.harness.primaryPort, single.database, async (c) =>
        (await c.query(`SELECT organization_id, target_id FROM "${tenantObjectName(tenant.id)}".audit_log WHERE action = 'project.created'`)).rows,
      );
      expect(entries.map((e) => e.organization_id).every((o) => o === tenant.id)).toBe(true);
      expect(entries.map((e) => e.target_id).sort()).toEqual([...made[tenant.slug]].sort());
    }
  });
});
