import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { tenantObjectName } from '../../libs/postgres/index.js';
import { createTenant, seedProjects, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Below the API: the runtime role itself, on every kind of placement. With no tenant set it
 * sees nothing; with tenant A set it sees only A; it cannot write rows for B, nor switch RLS off.
 */
let t: TestApp;
let sharedA: TenantFixture;
let sharedB: TenantFixture;
let schemaT: TenantFixture;
let dedicatedT: TenantFixture;

beforeAll(async () => {
  t = await startTestApp();
  sharedA = await createTenant(t, { tier: 'shared' });
  sharedB = await createTenant(t, { tier: 'shared' });
  schemaT = await createTenant(t, { tier: 'schema' });
  dedicatedT = await createTenant(t, { tier: 'dedicated' });
  for (const x of [sharedA, sharedB, schemaT, dedicatedT]) await seedProjects(x, 3, 1);
});
afterAll(async () => {
  await t?.close();
});

async function asApp<T>(port: number, database: string, schema: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const h = t.harness;
  const c = new pg.Client({ host: '127.0.0.1', port, user: h.appUser, password: h.appPassword, database });
  await c.connect();
  try {
    await c.query(`SET search_path = "${schema}"`);
    await c.query('BEGIN');
    try {
      return await fn(c);
    } finally {
      await c.query('ROLLBACK').catch(() => undefined);
    }
  } finally {
    await c.end();
  }
}

const setTenant = (c: pg.Client, id: string) => c.query(`SELECT set_config('app.current_org_id', $1, true)`, [id]);
const count = async (c: pg.Client, table: string) => Number((await c.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);

interface PlacementCase {
  name: string;
  tenant: () => TenantFixture;
  other: () => TenantFixture;
  where: () => { port: number; database: string; schema: string };
}

const cases: PlacementCase[] = [
  {
    name: 'the shared schema',
    tenant: () => sharedA,
    other: () => sharedB,
    where: () => ({ port: t.harness.primaryPort, database: t.database, schema: 'tenant_data' }),
  },
  {
    name: 'a tenant schema',
    tenant: () => schemaT,
    other: () => sharedA,
    where: () => ({ port: t.harness.primaryPort, database: t.database, schema: tenantObjectName(schemaT.id) }),
  },
  {
    name: 'a dedicated database',
    tenant: () => dedicatedT,
    other: () => sharedA,
    where: () => ({ port: t.harness.secondaryPort, database: tenantObjectName(dedicatedT.id), schema: 'tenant_data' }),
  },
];

describe.each(cases)('the runtime role on $name', ({ tenant, other, where }) => {
  const run = <T>(fn: (c: pg.Client) => Promise<T>) => {
    const w = where();
    return asApp(w.port, w.database, w.schema, fn);
  };

  it('sees no rows at all while no tenant is set', async () => {
    await run(async (c) => {
      expect(await count(c, 'projects')).toBe(0);
      expect(await count(c, 'tasks')).toBe(0);
    });
  });

  it("sees exactly its tenant's rows once the tenant is set", async () => {
    await run(async (c) => {
      await setTenant(c, tenant().id);
      const rows = (await c.query('SELECT DISTINCT organization_id FROM projects')).rows;
      expect(rows).toEqual([{ organization_id: tenant().id }]);
      expect(await count(c, 'projects')).toBe(3);
    });
  });

  it("sees none of its tenant's rows with another tenant set (the right placement, the wrong tenant)", async () => {
    await run(async (c) => {
      await setTenant(c, other().id);
      const seen = (await c.query('SELECT DISTINCT organization_id FROM projects')).rows.map((r) => r.organization_id);
      expect(seen).not.toContain(tenant().id);
      expect(seen.filter((id) => id !== other().id)).toEqual([]);
    });
  });

  it("cannot insert a row for another tenant, or one with no tenant", async () => {
    await run(async (c) => {
      await setTenant(c, tenant().id);
      await c.query('SAVEPOINT s');
      await expect(
        c.query(`INSERT INTO projects (organization_id, id, name) VALUES ($1, gen_random_uuid(), 'planted')`, [other().id]),
      ).rejects.toMatchObject({ code: '42501' });
      await c.query('ROLLBACK TO SAVEPOINT s');
      await c.query(`INSERT INTO projects (id, name) VALUES (gen_random_uuid(), 'own')`);
      expect(await count(c, 'projects')).toBe(4);
    });
    await run(async (c) => {
      await expect(c.query(`INSERT INTO projects (id, name) VALUES (gen_random_uuid(), 'orphan')`)).rejects.toMatchObject({
        code: expect.stringMatching(/^(23502|42501)$/),
      });
    });
  });

  it("cannot move its rows to another tenant, nor touch another tenant's rows", async () => {
    await run(async (c) => {
      await setTenant(c, tenant().id);
      await expect(c.query('UPDATE projects SET organization_id = $1', [other().id])).rejects.toMatchObject({ code: '42501' });
    });
    await run(async (c) => {
      await setTenant(c, other().id);
      const mine = [tenant().id];
      expect((await c.query(`UPDATE projects SET name = 'pwned' WHERE organization_id = $1`, mine)).rowCount).toBe(0);
      expect((await c.query('DELETE FROM tasks WHERE organization_id = $1', mine)).rowCount).toBe(0);
      expect((await c.query('DELETE FROM projects WHERE organization_id = $1', mine)).rowCount).toBe(0);
    });
    await run(async (c) => {
      await setTenant(c, tenant().id);
      expect(await count(c, 'projects')).toBe(3);
    });
  });

  it('cannot switch row security off, alter the tables or read the migration bookkeeping', async () => {
    await run(async (c) => {
      await c.query('SAVEPOINT s');
      await expect(c.query('ALTER TABLE projects DISABLE ROW LEVEL SECURITY')).rejects.toMatchObject({ code: '42501' });
      await c.query('ROLLBACK TO SAVEPOINT s');
      await expect(c.query('DROP POLICY tenant_isolation ON projects')).rejects.toMatchObject({ code: '42501' });
      await c.query('ROLLBACK TO SAVEPOINT s');
      await c.query('SET LOCAL row_security = off');
      await expect(c.query('SELECT count(*) FROM projects')).rejects.toMatchObject({ code: '42501' });
      await c.query('ROLLBACK TO SAVEPOINT s');
      await expect(c.query('SELECT * FROM _migrations')).rejects.toMatchObject({ code: '42501' });
      await c.query('ROLLBACK TO SAVEPOINT s');
      await expect(c.query('CREATE TABLE sneaky (id int)')).rejects.toMatchObject({ code: '42501' });
    });
  });
});

it('the runtime role is not a superuser, cannot bypass RLS and owns no tables', async () => {
  await asApp(t.harness.primaryPort, t.database, 'tenant_data', async (c) => {
    const { rows } = await c.query(
      `SELECT rolsuper, rolbypassrls, (SELECT count(*) FROM pg_class WHERE relowner = r.oid) AS owned
         FROM pg_roles r WHERE rolname = current_user`,
    );
    expect(rows[0]).toEqual({ rolsuper: false, rolbypassrls: false, owned: '0' });
  });
});

it('every tenant table in every placement has RLS enabled and forced, with USING and WITH CHECK', async () => {
  const check = async (port: number, database: string, schema: string) =>
    asApp(port, database, schema, async (c) => {
      const { rows } = await c.query(
        `SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                bool_and(p.qual IS NOT NULL AND p.with_check IS NOT NULL) AS guarded
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_policies p ON p.schemaname = n.nspname AND p.tablename = c.relname
          WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> '_migrations'
          GROUP BY 1, 2, 3 ORDER BY 1`,
        [schema],
      );
      expect(rows.length).toBeGreaterThanOrEqual(2);
      for (const r of rows) expect(r).toMatchObject({ relrowsecurity: true, relforcerowsecurity: true, guarded: true });
    });
  await check(t.harness.primaryPort, t.database, 'tenant_data');
  await check(t.harness.primaryPort, t.database, tenantObjectName(schemaT.id));
  await check(t.harness.secondaryPort, tenantObjectName(dedicatedT.id), 'tenant_data');
});
