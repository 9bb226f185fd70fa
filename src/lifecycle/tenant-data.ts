import pg from 'pg';
import { quoteIdent, TENANT_SETTING, uuidLiteral } from '../../libs/postgres/index.js';
import { type DatabaseRuntime, serverOf } from '../tenancy/placements.js';
import type { Placement } from '../tenancy/tenant-route.js';

/**
 * Bookkeeping tables of a placement that are not tenant data (never exported, copied or counted):
 * audit_chain_heads and audit_pending are derived from audit_log and audit_chain, and rebuilt by
 * their triggers as a data tool copies those (migrations/tenant/0004).
 */
const NOT_TENANT_DATA = new Set(['_migrations', 'tenant_fences', 'audit_chain_heads', 'audit_pending']);

/** A tenant table of a placement, as the platform's data tools (export, move, purge) see it. */
export interface TenantTable {
  name: string;
  /** Every column, in a fixed order (by name), so that checksums agree across placements. */
  columns: string[];
  /** The key column besides organization_id: rows are read and copied in its order. */
  key: string;
  /** Its SQL type (uuid, bigint, ...), for casts of key lists. */
  keyType: string;
  /** Foreign keys to other tables of the placement (self-references aside). */
  foreignKeys: Array<{ parent: string; columns: string[]; parentColumns: string[] }>;
}

/** Counts and an order-independent checksum of one tenant's rows in one table. */
export interface TableFingerprint {
  rows: number;
  checksum: string;
}

/**
 * A connection as the owner role to a placement, confined to one tenant: the search_path is the
 * placement's schema and app.current_org_id is the tenant, for the whole session. Tenant tables
 * FORCE row-level security, so even the owner sees and writes only that tenant's rows through it.
 */
export async function connectToTenant(runtime: DatabaseRuntime, placement: Placement, tenantId: string, applicationName = 'tenancy-data'): Promise<pg.Client> {
  const server = serverOf(runtime, placement.serverKey);
  const client = new pg.Client({
    host: server.host,
    port: server.port,
    user: server.ownerUser,
    password: server.ownerPassword,
    database: placement.database,
    application_name: applicationName,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(`SET search_path = ${quoteIdent(placement.schema)}; SET ${TENANT_SETTING} = ${uuidLiteral(tenantId)}`);
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return client;
}

/**
 * The tenant tables of the connection's placement (every table of its schema with an
 * organization_id column, bookkeeping aside), parents before children by their foreign keys,
 * so that copying in this order never breaks a reference and deleting in reverse never either.
 */
export async function tenantTables(client: pg.ClientBase): Promise<TenantTable[]> {
  const { rows } = await client.query<{
    name: string;
    columns: string[];
    key: string[];
    key_type: string | null;
    parents: string[];
    foreign_keys: TenantTable['foreignKeys'];
  }>(
    `SELECT c.relname AS name,
            (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
            (SELECT coalesce(array_agg(a.attname::text ORDER BY a.attname), '{}') FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
              WHERE i.indrelid = c.oid AND i.indisprimary AND a.attname <> 'organization_id') AS key,
            (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
              WHERE i.indrelid = c.oid AND i.indisprimary AND a.attname <> 'organization_id' LIMIT 1) AS key_type,
            (SELECT coalesce(json_agg(json_build_object(
                      'parent', p.relname,
                      'columns', (SELECT array_agg(a.attname ORDER BY k.i) FROM unnest(f.conkey) WITH ORDINALITY AS k (n, i)
                                    JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.n),
                      'parentColumns', (SELECT array_agg(a.attname ORDER BY k.i) FROM unnest(f.confkey) WITH ORDINALITY AS k (n, i)
                                          JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.n))), '[]')
               FROM pg_constraint f JOIN pg_class p ON p.oid = f.confrelid
              WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.confrelid <> c.oid) AS foreign_keys,
            (SELECT coalesce(array_agg(DISTINCT p.relname::text), '{}') FROM pg_constraint f
               JOIN pg_class p ON p.oid = f.confrelid
              WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.confrelid <> c.oid) AS parents
       FROM pg_class c
      WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
        AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'organization_id' AND NOT a.attisdropped)
      ORDER BY c.relname`,
  );
  const tables = rows.filter((r) => !NOT_TENANT_DATA.has(r.name));
  const byName = new Map(tables.map((t) => [t.name, t]));
  const ordered: TenantTable[] = [];
  const placed = new Set<string>();
  const visiting = new Set<string>();
  const visit = (name: string): void => {
    if (placed.has(name) || !byName.has(name)) return;
    if (visiting.has(name)) throw new Error(`tenant tables have a foreign-key cycle through '${name}'`);
    visiting.add(name);
    const t = byName.get(name)!;
    t.parents.forEach(visit);
    visiting.delete(name);
    placed.add(name);
    if (t.key.length !== 1) {
      throw new Error(`tenant table '${name}' must have a primary key of organization_id and one more column (it has: ${t.key.join(', ') || 'none'})`);
    }
    ordered.push({ name, columns: t.columns, key: t.key[0], keyType: t.key_type!, foreignKeys: t.foreign_keys });
  };
  tables.forEach((t) => visit(t.name));
  return ordered;
}

/** `"a", "b", ...` for a table's columns. */
export function columnList(table: TenantTable): string {
  return table.columns.map(quoteIdent).join(', ');
}

/**
 * Row count and an order-independent checksum of the tenant's rows of one table: the sum of the
 * first 64 bits of each row's MD5, over a canonical text form of the row (columns by name). Two
 * placements agree on it only if they hold the same multiset of rows.
 */
export async function fingerprint(client: pg.ClientBase, table: TenantTable, tenantId: string): Promise<TableFingerprint> {
  const { rows } = await client.query<{ rows: string; checksum: string }>(
    `SELECT count(*)::text AS rows,
            coalesce(sum(('x' || substr(md5(ROW(${columnList(table)})::text), 1, 16))::bit(64)::bigint::numeric), 0)::text AS checksum
       FROM ${quoteIdent(table.name)} WHERE organization_id = $1`,
    [tenantId],
  );
  return { rows: Number(rows[0].rows), checksum: rows[0].checksum };
}

/**
 * Deletes one tenant's rows from every tenant table of the connection's placement, children
 * first, and a fence a move may have left there: one transaction. The connection must be one of
 * connectToTenant's, so RLS keeps every other tenant's rows out of reach whatever happens.
 */
export async function deleteTenantRows(client: pg.ClientBase, tenantId: string): Promise<Array<{ name: string; rowsRemoved: number }>> {
  const tables = await tenantTables(client);
  await client.query('BEGIN');
  try {
    // The audit log takes deletes only from the platform's own data tools (see migrations/tenant/0003).
    await client.query(`SET LOCAL app.audit_maintenance = 'on'`);
    const removed: Array<{ name: string; rowsRemoved: number }> = [];
    for (const t of [...tables].reverse()) {
      const r = await client.query(`DELETE FROM ${quoteIdent(t.name)} WHERE organization_id = $1`, [tenantId]);
      removed.push({ name: t.name, rowsRemoved: r.rowCount ?? 0 });
    }
    const bookkeeping = await client.query<{ fences: string | null; heads: string | null; pending: string | null }>(
      `SELECT to_regclass('tenant_fences')::text AS fences, to_regclass('audit_chain_heads')::text AS heads, to_regclass('audit_pending')::text AS pending`,
    );
    if (bookkeeping.rows[0].fences) await client.query('DELETE FROM tenant_fences WHERE organization_id = $1', [tenantId]);
    if (bookkeeping.rows[0].heads) await client.query('DELETE FROM audit_chain_heads WHERE organization_id = $1', [tenantId]);
    if (bookkeeping.rows[0].pending) await client.query('DELETE FROM audit_pending WHERE organization_id = $1', [tenantId]);
    await client.query('COMMIT');
    return removed;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** The tenant migrations a placement has applied, in order: two placements must agree before rows move between them. */
export async function appliedMigrations(client: pg.ClientBase): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>('SELECT name FROM _migrations ORDER BY name');
  return rows.map((r) => r.name);
}
