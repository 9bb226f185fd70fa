import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  EmbeddedCluster,
  ensureDatabase,
  ensurePlatformRoles,
  migrateSchema,
  quoteIdent,
  SqlMigration,
  startEmbeddedCluster,
} from '../postgres/index.js';
import { freePort } from './ports.js';

/** What test workers need to reach the servers started once by the global setup (passed through the environment). */
export interface HarnessInfo {
  primaryPort: number;
  secondaryPort: number;
  superuserPassword: string;
  ownerUser: string;
  ownerPassword: string;
  appUser: string;
  appPassword: string;
  templateDatabase: string;
}

const ENV_KEY = 'TENANCY_TEST_HARNESS';

export function publishHarness(info: HarnessInfo): void {
  process.env[ENV_KEY] = JSON.stringify(info);
}

export function harnessInfo(): HarnessInfo {
  const raw = process.env[ENV_KEY];
  if (!raw) throw new Error('the PostgreSQL test harness is not running (jest globalSetup did not run)');
  return JSON.parse(raw) as HarnessInfo;
}

export interface StartedHarness {
  info: HarnessInfo;
  clusters: EmbeddedCluster[];
  /** The temporary folder holding both servers' data: removed by stopHarness. */
  root: string;
}

/**
 * Starts two real PostgreSQL servers (the second stands in for "another database server"),
 * creates the platform roles on both and a migrated template database on the first, so each
 * test file can clone a fresh database in milliseconds.
 */
export async function startHarness(migrate: (owner: pg.Client) => Promise<void>): Promise<StartedHarness> {
  const root = mkdtempSync(join(tmpdir(), 'tenancy-test-pg-'));
  // PostgreSQL runs as another system user when we are root: it must be able to enter the folder.
  chmodSync(root, 0o755);
  const superuserPassword = randomBytes(18).toString('base64url');
  const info: HarnessInfo = {
    primaryPort: await freePort(),
    secondaryPort: 0,
    superuserPassword,
    ownerUser: 'tenancy_owner',
    ownerPassword: randomBytes(18).toString('base64url'),
    appUser: 'tenancy_app',
    appPassword: randomBytes(18).toString('base64url'),
    templateDatabase: 'tenancy_template',
  };
  info.secondaryPort = await freePort();
  const clusters = await Promise.all(
    [info.primaryPort, info.secondaryPort].map((port, i) =>
      startEmbeddedCluster({ dataDir: join(root, i === 0 ? 'primary' : 'secondary'), port, password: superuserPassword, fast: true, maxConnections: 400 }),
    ),
  );
  for (const port of [info.primaryPort, info.secondaryPort]) {
    await withSuperuser(info, port, 'postgres', async (c) => {
      await ensurePlatformRoles(c, info);
      if (port === info.primaryPort) await ensureDatabase(c, info.templateDatabase, info.ownerUser);
    });
  }
  const owner = new pg.Client({ host: '127.0.0.1', port: info.primaryPort, user: info.ownerUser, password: info.ownerPassword, database: info.templateDatabase });
  await owner.connect();
  try {
    await migrate(owner);
  } finally {
    await owner.end();
  }
  return { info, clusters, root };
}

/** Stops both servers and removes their data (each run's servers hold a gigabyte or so by the end). */
export async function stopHarness(h: Pick<StartedHarness, 'clusters' | 'root'>): Promise<void> {
  await Promise.all(h.clusters.map((c) => c.stop()));
  rmSync(h.root, { recursive: true, force: true });
}

export async function withSuperuser<T>(info: HarnessInfo, port: number, database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: info.superuserPassword, database });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A fresh database for one test file, cloned from the migrated template. */
export async function cloneTemplate(info: HarnessInfo, prefix = 'test'): Promise<string> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await withSuperuser(info, info.primaryPort, 'postgres', (c) =>
    c.query(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE ${quoteIdent(info.templateDatabase)} OWNER ${quoteIdent(info.ownerUser)}`),
  );
  return name;
}

export function ownerUrl(info: HarnessInfo, port: number, database: string): string {
  return `postgres://${info.ownerUser}:${encodeURIComponent(info.ownerPassword)}@127.0.0.1:${port}/${database}`;
}

export type { SqlMigration };
export { migrateSchema };
