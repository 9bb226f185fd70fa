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

/** A migration's failure names the migration (`migration`), so a rollout can report which one broke. */
export type MigrationFailure = Error & { migration?: string };

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
  let current: string | undefined;
  try {
    // One round trip for the prologue (a rollout runs it on every placement). No parameters in a
    // multi-statement message: the schema name is checked by quoteIdent, so it is a safe literal.
    // pg_temp is named, last: a function created with SET search_path FROM CURRENT must never
    // look in the caller's temporary schema first (where anyone may create a table by that name).
    const prologue = (await client.query(
      `BEGIN;
       SELECT pg_advisory_xact_lock(hashtext('migrate:${schema}'));
       CREATE SCHEMA IF NOT EXISTS ${s};
       SELECT set_config('search_path', '${s}, pg_temp', true);
       CREATE TABLE IF NOT EXISTS ${s}._migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
       SELECT name FROM ${s}._migrations`,
    )) as unknown as pg.QueryResult<{ name: string }>[];
    const done = new Set(prologue[prologue.length - 1].rows.map((r) => r.name));
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.name)) continue;
      current = m.name;
      await client.query(m.sql);
      await client.query(`INSERT INTO ${s}._migrations (name) VALUES ($1)`, [m.name]);
      applied.push(m.name);
    }
    current = undefined;
    if (afterApply) await afterApply(client);
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (current && err instanceof Error) (err as MigrationFailure).migration ??= current;
    throw err;
  }
}
