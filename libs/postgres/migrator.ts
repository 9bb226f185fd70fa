import pg from 'pg';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { quoteIdent } from './identifiers.js';

export interface SqlMigration {
  name: string;
  sql: string;
}

/** Forward-only migrations, one reviewed .sql file each, applied in file-name order. */
export function loadSqlMigrations(dir: string): SqlMigration[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .sort()
    .map((name) => ({ name, sql: readFileSync(join(dir, name), 'utf8') }));
}

/**
 * Applies what is missing of `migrations` to one schema, in one transaction, under an advisory
 * lock so that concurrent runners (several app instances starting) wait instead of colliding.
 * Unqualified names in the SQL resolve to that schema. Returns the names applied.
 */
export async function migrateSchema(
  client: pg.ClientBase,
  schema: string,
  migrations: SqlMigration[],
  afterApply?: (client: pg.ClientBase) => Promise<void>,
): Promise<string[]> {
  const s = quoteIdent(schema);
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`migrate:${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(`SELECT set_config('search_path', $1, true)`, [s]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${s}._migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const { rows } = await client.query<{ name: string }>(`SELECT name FROM ${s}._migrations`);
    const done = new Set(rows.map((r) => r.name));
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.name)) continue;
      await client.query(m.sql);
      await client.query(`INSERT INTO ${s}._migrations (name) VALUES ($1)`, [m.name]);
      applied.push(m.name);
    }
    if (afterApply) await afterApply(client);
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
