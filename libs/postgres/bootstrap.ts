import pg from 'pg';
import { quoteIdent } from './identifiers.js';

export interface RoleSpec {
  ownerUser: string;
  ownerPassword: string;
  appUser: string;
  appPassword: string;
}

async function ensureLoginRole(client: pg.Client, name: string, password: string, attrs: string): Promise<void> {
  const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
  const verb = exists.rowCount ? 'ALTER' : 'CREATE';
  // DDL takes no parameters: let the server quote the password literal.
  const { rows } = await client.query<{ sql: string }>(
    `SELECT format('${verb} ROLE %I WITH LOGIN ${attrs} PASSWORD %L', $1::text, $2::text) AS sql`,
    [name, password],
  );
  await client.query(rows[0].sql);
}

/**
 * Creates (or re-aligns) the two roles the platform needs on a server it administers as superuser:
 * an owner that runs migrations and owns every table, and a runtime role that can do neither
 * superuser things nor bypass RLS.
 */
export async function ensurePlatformRoles(superuser: pg.Client, spec: RoleSpec): Promise<void> {
  await ensureLoginRole(superuser, spec.ownerUser, spec.ownerPassword, 'NOSUPERUSER CREATEDB NOCREATEROLE NOBYPASSRLS');
  await ensureLoginRole(superuser, spec.appUser, spec.appPassword, 'NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT');
  // Dropping a dedicated database (a purge, a move's clean-up) ends the app's connections to it
  // (DROP DATABASE ... WITH (FORCE)): the owner may signal non-superuser backends, nothing more.
  await superuser.query(`GRANT pg_signal_backend TO ${quoteIdent(spec.ownerUser)}`);
}

export async function ensureDatabase(client: pg.Client, name: string, owner: string): Promise<boolean> {
  const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  if (exists.rowCount) return false;
  await client.query(`CREATE DATABASE ${quoteIdent(name)} OWNER ${quoteIdent(owner)}`);
  return true;
}

export interface RoleSafety {
  role: string;
  superuser: boolean;
  bypassRls: boolean;
  ownedTables: number;
  /** Roles it is a member of (it could SET ROLE to them) that are superuser, bypass RLS or own tables. */
  unsafeMemberships: string[];
}

/** What the connected role could do to escape RLS. */
export async function inspectRoleSafety(client: Pick<pg.ClientBase, 'query'>): Promise<RoleSafety> {
  const { rows } = await client.query<{ role: string; superuser: boolean; bypass: boolean; owned: string; unsafe: string[] }>(
    `SELECT r.rolname AS role, r.rolsuper AS superuser, r.rolbypassrls AS bypass,
            (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid AND c.relkind IN ('r', 'p')) AS owned,
            ARRAY(SELECT m.rolname::text FROM pg_roles m
                   WHERE m.oid <> r.oid AND pg_has_role(r.oid, m.oid, 'MEMBER')
                     AND (m.rolsuper OR m.rolbypassrls
                          OR EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = m.oid AND c.relkind IN ('r', 'p')))
                   ORDER BY 1) AS unsafe
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  const r = rows[0];
  return { role: r.role, superuser: r.superuser, bypassRls: r.bypass, ownedTables: Number(r.owned), unsafeMemberships: r.unsafe };
}

export function roleSafetyProblems(s: RoleSafety): string[] {
  const problems: string[] = [];
  if (s.superuser) problems.push(`role "${s.role}" is a superuser`);
  if (s.bypassRls) problems.push(`role "${s.role}" has BYPASSRLS`);
  if (s.ownedTables > 0) problems.push(`role "${s.role}" owns ${s.ownedTables} table(s), so FORCE RLS would be its only guard`);
  for (const m of s.unsafeMemberships) problems.push(`role "${s.role}" is a member of "${m}", which is a superuser, bypasses RLS or owns tables`);
  return problems;
}
