import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { fromRoot } from '../../config/paths.js';
import { loadSqlMigrations, quoteIdent, tenantObjectName } from '../../libs/postgres/index.js';
import { cloneTemplate, harnessInfo, HarnessInfo, ownerUrl } from '../../libs/testing/index.js';
import { TIERS, type Tier } from '../../src/tenancy/tenant-route.js';
import { CliRun, runCli, tableRows } from '../support/cli-runner.js';

const STACK_LINE = /^\s+at .+/m;

let harness: HarnessInfo;
let database: string;
let env: Record<string, string>;
let cwd: string;
const everything: string[] = [];

/** The compiled CLI in a child process, as an operator runs it (see test/support/cli-runner.ts); every output is kept for the secrets check. */
async function cli(...args: string[]): Promise<CliRun> {
  const run = await runCli({ cwd, env }, ...args);
  everything.push(run.stdout, run.stderr);
  return run;
}

async function withPrimaryOwner<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: ownerUrl(harness, harness.primaryPort, database) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  harness = harnessInfo();
  database = await cloneTemplate(harness, 'cli');
  // Not the project folder: a developer's .env there must not leak into the child.
  cwd = mkdtempSync(join(tmpdir(), 'tenancy-cli-'));
  env = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATABASE_URL: ownerUrl(harness, harness.primaryPort, database),
    DATABASE_SECONDARY_URL: ownerUrl(harness, harness.secondaryPort, 'postgres'),
    DATABASE_APP_USER: harness.appUser,
    DATABASE_APP_PASSWORD: harness.appPassword,
    JWT_SECRET: randomBytes(32).toString('hex'),
    DB_POOL_MAX: '4',
  };
});

afterAll(() => {
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

describe('the operators CLI', () => {
  const created = new Map<Tier, string>();

  it('describes itself and every command with --help', async () => {
    const top = await cli('--help');
    expect(top.code).toBe(0);
    for (const command of ['migrate', 'tenants', 'servers']) expect(top.stdout).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
    expect(top.stdout).toContain('Exit codes');

    const tenants = await cli('tenants', '--help');
    expect(tenants.code).toBe(0);
    expect(tenants.stdout).toMatch(/^\s+list\b/m);
    expect(tenants.stdout).toMatch(/^\s+create\b/m);

    const create = await cli('tenants', 'create', '--help');
    expect(create.code).toBe(0);
    expect(create.stdout).toContain('--tier <tier>');
    expect(create.stdout).toContain('Examples:');

    const none = await cli();
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('Usage:');
  });

  it('refuses a bad slug with exit code 2, naming it, before touching any database', async () => {
    const res = await cli('tenants', 'create', 'Not_A_Slug', '--name', 'Bad', '--tier', 'shared', '--owner', 'a@bad.test');
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("'Not_A_Slug'");
    expect(res.stderr).toContain('lowercase letters, digits or dashes');
    expect(res.stderr).not.toMatch(STACK_LINE);
    expect(res.stdout).toBe('');
    const count = await withPrimaryOwner(async (c) => (await c.query('SELECT count(*)::int AS n FROM control.tenants')).rows[0].n);
    expect(count).toBe(0);
  });

  it('refuses other bad usage with exit code 2', async () => {
    const missing = await cli('tenants', 'create', 'no-owner', '--name', 'x', '--tier', 'shared');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--owner');
    const tier = await cli('tenants', 'create', 'bad-tier', '--name', 'x', '--tier', 'cloud', '--owner', 'a@b.test');
    expect(tier.code).toBe(2);
    expect(tier.stderr).toContain('shared, schema, dedicated');
    const email = await cli('tenants', 'create', 'bad-email', '--name', 'x', '--tier', 'shared', '--owner', 'not-an-email');
    expect(email.code).toBe(2);
    expect(email.stderr).toContain("--owner 'not-an-email'");
    const limit = await cli('tenants', 'list', '--limit', 'lots');
    expect(limit.code).toBe(2);
    expect((await cli('frobnicate')).code).toBe(2);
  });

  it('fails with exit code 1 and the variable named on bad configuration', async () => {
    const saved = env;
    env = { ...env, DATABASE_URL: 'mysql://nope' };
    try {
      const res = await cli('tenants', 'list');
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('DATABASE_URL must be a postgres:// URL');
      expect(res.stderr).not.toMatch(STACK_LINE);
    } finally {
      env = saved;
    }
  });

  it.each(TIERS)('creates a %s tenant through the provisioning service', async (tier) => {
    const slug = `cli-${tier}-${randomBytes(3).toString('hex')}`;
    const res = await cli('tenants', 'create', slug, '--name', `CLI ${tier}`, '--tier', tier, '--owner', `owner@${slug}.test`);
    expect(res).toMatchObject({ code: 0 });
    expect(res.stderr).not.toMatch(STACK_LINE);
    const [row] = tableRows(res.stdout).slice(1);
    expect(row.slice(0, 1)).toEqual([slug]);
    expect(row.slice(2, 5)).toEqual([tier, tier === 'dedicated' ? 'secondary' : 'primary', 'active']);
    created.set(tier, slug);

    const stored = await withPrimaryOwner(
      async (c) =>
        (
          await c.query(
            `SELECT t.status, t.tier, t.server_key, u.email, m.role FROM control.tenants t
               JOIN control.memberships m ON m.tenant_id = t.id JOIN control.users u ON u.id = m.user_id
              WHERE t.slug = $1`,
            [slug],
          )
        ).rows,
    );
    expect(stored).toEqual([
      { status: 'active', tier, server_key: tier === 'dedicated' ? 'secondary' : 'primary', email: `owner@${slug}.test`, role: 'owner' },
    ]);
  });

  it('refuses a taken slug with the error code and no stack trace', async () => {
    const slug = created.get('shared')!;
    const res = await cli('tenants', 'create', slug, '--name', 'again', '--tier', 'schema', '--owner', 'x@y.test');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('TENANT_SLUG_TAKEN');
    expect(res.stderr).toContain(`'${slug}'`);
    expect(res.stderr).not.toMatch(STACK_LINE);
    expect(res.stdout).toBe('');
  });

  it('refuses an unknown server with the error code, and keeps nothing', async () => {
    const slug = `cli-nowhere-${randomBytes(3).toString('hex')}`;
    const res = await cli('tenants', 'create', slug, '--name', 'x', '--tier', 'dedicated', '--owner', 'x@y.test', '--server', 'nowhere');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("SERVER_NOT_FOUND: no database server is registered as 'nowhere'");
    expect(res.stderr).not.toMatch(STACK_LINE);
    const kept = await withPrimaryOwner(async (c) => (await c.query('SELECT 1 FROM control.tenants WHERE slug = $1', [slug])).rowCount);
    expect(kept).toBe(0);
  });

  it('lists the tenants in a table', async () => {
    expect(created.size).toBe(TIERS.length);
    const res = await cli('tenants', 'list');
    expect(res.code).toBe(0);
    const [head, ...rows] = tableRows(res.stdout);
    expect(head).toEqual(['slug', 'id', 'tier', 'server', 'status', 'created']);
    expect(rows.map((r) => [r[0], r[2], r[3], r[4]])).toEqual(
      TIERS.map((tier) => [created.get(tier), tier, tier === 'dedicated' ? 'secondary' : 'primary', 'active']),
    );
    for (const r of rows) {
      expect(r[1]).toMatch(/^[0-9a-f-]{36}$/);
      expect(r[5]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
    }
    expect(res.stderr).toContain(`3 of 3 tenants`);

    const one = await cli('tenants', 'list', '--limit', '1');
    expect(one.code).toBe(0);
    expect(tableRows(one.stdout).slice(1).map((r) => r[0])).toEqual([created.get('shared')]);
    expect(one.stderr).toContain('1 of 3 tenants (raise --limit to see more)');
  });

  it('lists the servers with their tenants and never their credentials', async () => {
    const res = await cli('servers', 'list');
    expect(res.code).toBe(0);
    const [head, ...rows] = tableRows(res.stdout);
    expect(head).toEqual(['key', 'host', 'port', 'tenants', 'shared', 'schema', 'dedicated']);
    expect(rows).toEqual([
      ['primary', '127.0.0.1', String(harness.primaryPort), '2', '1', '1', '0'],
      ['secondary', '127.0.0.1', String(harness.secondaryPort), '1', '0', '0', '1'],
    ]);
    expect(res.stdout + res.stderr).not.toMatch(/password|postgres:\/\//i);
  });

  it('migrates every placement with progress, including one that missed its migrations', async () => {
    // A schema tenant whose schema was never made: what a failed rollout or a restore could leave.
    const id = randomUUID();
    const schema = tenantObjectName(id);
    await withPrimaryOwner((c) =>
      c.query(
        `INSERT INTO control.tenants (id, slug, name, status, tier, server_key, database_name, schema_name)
         VALUES ($1, $2, 'Behind', 'active', 'schema', 'primary', current_database(), $3)`,
        [id, `behind-${randomBytes(3).toString('hex')}`, schema],
      ),
    );

    const res = await cli('migrate');
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('3 tenant placements');
    expect(res.stdout).toContain('servers primary, secondary');
    // The shared tier's placement counts too: 4 in all.
    expect(res.stderr).toMatch(/tenant placements \[[^\]]*\] 100% \| 4\/4/);
    expect(res.stderr).toContain('tenant migrations applied to 1 of 4 placements');
    expect(res.stderr).not.toContain('open handles');

    const applied = await withPrimaryOwner(
      async (c) => (await c.query(`SELECT name FROM ${quoteIdent(schema)}._migrations ORDER BY name`)).rows.map((r) => r.name),
    );
    expect(applied).toEqual(loadSqlMigrations(fromRoot('migrations', 'tenant')).map((m) => m.name));

    const again = await cli('migrate');
    expect(again.code).toBe(0);
    expect(again.stderr).not.toContain('tenant migrations applied');
  });

  it('never printed a password, in any output of this file', () => {
    expect(everything.length).toBeGreaterThan(20);
    const all = everything.join('\n');
    for (const secret of [harness.superuserPassword, harness.ownerPassword, harness.appPassword, env.JWT_SECRET]) {
      expect(all).not.toContain(secret);
    }
    expect(all).not.toContain('open handles');
  });
});
