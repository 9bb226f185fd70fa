import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { harnessInfo, withSuperuser } from '../../libs/testing/index.js';
import type { Tier } from '../../src/tenancy/tenant-route.js';
import { createTenant, uniqueSlug } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Provisioning is one call per tier, and a failure half way leaves nothing behind: no tenant
 * row, no schema, no database, and the slug can be used again. The secondary server is
 * administered here by an owner role of this file's own, so "no database left" is exact.
 */
const h = harnessInfo();
const owner = `prov_owner_${randomBytes(3).toString('hex')}`;
const ownerPassword = randomBytes(12).toString('hex');
let t: TestApp;

beforeAll(async () => {
  await withSuperuser(h, h.secondaryPort, 'postgres', (c) => c.query(`CREATE ROLE ${owner} LOGIN CREATEDB PASSWORD '${ownerPassword}'`));
  t = await startTestApp({
    env: { DATABASE_SECONDARY_URL: `postgres://${owner}:${ownerPassword}@127.0.0.1:${h.secondaryPort}/postgres` },
  });
});
afterAll(async () => {
  await t?.close();
  await withSuperuser(h, h.secondaryPort, 'postgres', async (c) => {
    const { rows } = await c.query(`SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = $1`, [owner]);
    for (const r of rows) await c.query(`DROP DATABASE "${r.datname}" WITH (FORCE)`);
    await c.query(`DROP ROLE ${owner}`);
  });
});

const databasesOfOwner = () =>
  withSuperuser(h, h.secondaryPort, 'postgres', async (c) =>
    (await c.query(`SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = $1 ORDER BY 1`, [owner])).rows.map(
      (r) => r.datname as string,
    ),
  );
const tenantSchemas = () =>
  withSuperuser(h, h.primaryPort, t.database, async (c) =>
    (await c.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%' ORDER BY 1`)).rows.map((r) => r.nspname as string),
  );

async function create(tier: Tier, slug = uniqueSlug(tier), server?: string) {
  return (await t.admin()).post('/tenants', { slug, name: slug, tier, ownerEmail: `o@${slug}.test`, server });
}

async function slugExists(slug: string): Promise<boolean> {
  const list = await (await t.admin()).get('/tenants?limit=500');
  return list.body.items.some((x: { slug: string }) => x.slug === slug);
}

describe('provisioning', () => {
  it('puts a dedicated tenant in a database of its own on the secondary server, migrated and reachable', async () => {
    const before = await databasesOfOwner();
    const res = await create('dedicated');
    expect(res.status).toBe(201);
    expect(res.body.placement).toEqual({ tier: 'dedicated', server: 'secondary' });
    const after = await databasesOfOwner();
    expect(after.filter((d) => !before.includes(d))).toEqual([`t_${res.body.id.replaceAll('-', '')}`]);
  });

  it.each(['schema', 'dedicated'] as const)('removes everything when the %s placement fails half way, then the slug works again', async (tier) => {
    const dbs = await databasesOfOwner();
    const schemas = await tenantSchemas();
    t.runtime.tenantMigrations.push({ name: '9999_broken.sql', sql: 'CREATE TABLE half_way (id int); SELECT no_such_function();' });
    const slug = uniqueSlug('broken');
    let res;
    try {
      res = await create(tier, slug);
    } finally {
      t.runtime.tenantMigrations.pop();
    }
    expect(res.status).toBe(503);
    expect(res.body.code).toBe('PROVISIONING_FAILED');
    expect(res.body.message).toMatch(/could not prepare the .* placement on server '(primary|secondary)'.*nothing was kept/);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(await slugExists(slug)).toBe(false);
    expect(await databasesOfOwner()).toEqual(dbs);
    expect(await tenantSchemas()).toEqual(schemas);
    const again = await create(tier, slug);
    expect(again.status).toBe(201);
  });

  it('says why when the platform lacks a privilege on the server, and keeps nothing', async () => {
    await withSuperuser(h, h.secondaryPort, 'postgres', (c) => c.query(`ALTER ROLE ${owner} NOCREATEDB`));
    try {
      const dbs = await databasesOfOwner();
      const slug = uniqueSlug('noprivs');
      const res = await create('dedicated', slug);
      expect(res.status).toBe(503);
      expect(res.body.message).toContain('the platform lacks a privilege on that server');
      expect(JSON.stringify(res.body)).not.toMatch(new RegExp(`${owner}|${ownerPassword}|127\\.0\\.0\\.1`));
      expect(await slugExists(slug)).toBe(false);
      expect(await databasesOfOwner()).toEqual(dbs);
    } finally {
      await withSuperuser(h, h.secondaryPort, 'postgres', (c) => c.query(`ALTER ROLE ${owner} CREATEDB`));
    }
  });

  it('frees the slug of a provisioning that failed or was abandoned by a stopped process', async () => {
    const ok = await create('schema');
    const slug = ok.body.slug as string;
    const schema = `t_${(ok.body.id as string).replaceAll('-', '')}`;
    await withSuperuser(h, h.primaryPort, t.database, (c) =>
      c.query(`UPDATE control.tenants SET status = 'provisioning', updated_at = now() - interval '1 hour' WHERE id = $1`, [ok.body.id]),
    );
    const again = await create('shared', slug);
    expect(again.status).toBe(201);
    expect(again.body.id).not.toBe(ok.body.id);
    expect(await tenantSchemas()).not.toContain(schema);
    // A provisioning still under way (recent) keeps its slug.
    await withSuperuser(h, h.primaryPort, t.database, (c) => c.query(`UPDATE control.tenants SET status = 'provisioning' WHERE id = $1`, [again.body.id]));
    expect((await create('shared', slug)).status).toBe(409);
  });

  it('starts even when one placement cannot be migrated, names it, and answers 503 for that tenant only', async () => {
    const email = 'owner@on-a-retired-server.test';
    await withSuperuser(h, h.primaryPort, t.database, async (c) => {
      await c.query(`INSERT INTO control.database_servers (key, host, port) VALUES ('retired', '127.0.0.1', 1) ON CONFLICT DO NOTHING`);
      const id = (
        await c.query(
          `INSERT INTO control.tenants (id, slug, name, status, tier, server_key, database_name, schema_name)
           VALUES (gen_random_uuid(), 'on-a-retired-server', 'x', 'active', 'dedicated', 'retired', 't_0', 'tenant_data') RETURNING id`,
        )
      ).rows[0].id;
      const user = (await c.query(`INSERT INTO control.users (id, email) VALUES (gen_random_uuid(), $1) RETURNING id`, [email])).rows[0].id;
      await c.query(`INSERT INTO control.memberships (tenant_id, user_id, role) VALUES ($1, $2, 'owner')`, [id, user]);
    });
    // This instance knows nothing of the placement: the pool for it cannot be opened.
    const here = await (await t.login(email)).get('/orgs/on-a-retired-server/projects');
    expect(here.status).toBe(503);
    expect(here.body.code).toBe('TENANT_UNAVAILABLE');
    // A fresh instance sets the placement aside at start-up and still serves everyone else.
    // Same JWT secret: passport keeps one 'jwt' strategy per process, shared by both instances here.
    const second = await startTestApp({
      database: t.database,
      env: {
        JWT_SECRET: t.config.auth.jwtSecret!,
        DATABASE_SECONDARY_URL: `postgres://${owner}:${ownerPassword}@127.0.0.1:${h.secondaryPort}/postgres`,
      },
    });
    try {
      expect([...second.runtime.failedPlacements.values()]).toEqual([
        { tenant: 'on-a-retired-server', reason: expect.stringContaining("'retired' is not configured") },
      ]);
      const there = await (await second.login(email)).get('/orgs/on-a-retired-server/projects');
      expect(there.status).toBe(503);
      expect(there.body.code).toBe('TENANT_UNAVAILABLE');
      const other = await createTenant(second, { tier: 'shared' });
      expect((await other.owner.get(`/orgs/${other.slug}/projects`)).status).toBe(200);
    } finally {
      await second.close();
      await withSuperuser(h, h.primaryPort, t.database, (c) => c.query(`DELETE FROM control.tenants WHERE slug = 'on-a-retired-server'`));
    }
  });

  it('refuses unknown servers and tiers that cannot live on the named server', async () => {
    const unknown = await create('dedicated', uniqueSlug('x'), 'nowhere');
    expect(unknown.status).toBe(400);
    expect(unknown.body).toMatchObject({ code: 'SERVER_NOT_FOUND', field: 'server' });
    const misplaced = await create('shared', uniqueSlug('x'), 'secondary');
    expect(misplaced.status).toBe(400);
    expect(misplaced.body).toMatchObject({ code: 'TIER_NOT_ALLOWED', field: 'server' });
    const onPrimary = await create('dedicated', uniqueSlug('x'), 'primary');
    expect(onPrimary.status).toBe(201);
    expect(onPrimary.body.placement.server).toBe('primary');
  });

  it('lists tenants for platform admins with keyset pagination', async () => {
    const admin = await t.admin();
    const page1 = await admin.get('/tenants?limit=2');
    expect(page1.body.items).toHaveLength(2);
    const page2 = await admin.get(`/tenants?limit=2&cursor=${page1.body.nextCursor}`);
    expect(page2.body.items[0].id > page1.body.items[1].id).toBe(true);
  });
});

