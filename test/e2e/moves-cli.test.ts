import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { fromRoot } from '../../config/paths.js';
import { tenantObjectName } from '../../libs/postgres/index.js';
import { ownerUrl, withSuperuser } from '../../libs/testing/index.js';
import { cliEnv, runCli, tableRows } from '../support/cli-runner.js';
import { createTenant, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Moves driven by operators through the CLI, and the crash test: the process running a move is
 * killed (SIGKILL) in the middle of its copy; the tenant must keep serving reads and writes from
 * its source, and the move must then resume to a verified flip, or roll back cleanly.
 */
let t: TestApp;
let cwd: string;
let env: Record<string, string>;

beforeAll(async () => {
  t = await startTestApp({ env: { LIFECYCLE_SWEEP_INTERVAL_MS: '0' } });
  cwd = mkdtempSync(join(tmpdir(), 'tenancy-moves-cli-'));
  env = cliEnv(t.harness, t.database, t.config.auth.jwtSecret!, { MOVE_BATCH_ROWS: '200', MOVE_CLEANUP_DELAY_SECONDS: '3600' });
});
afterAll(async () => {
  await t?.close();
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

const cli = (...args: string[]) => runCli({ cwd, env }, ...args);

/** The rows of the moves table a command printed (its header and other tables aside). */
const moveRows = (stdout: string) => tableRows(stdout).filter((r) => /^[0-9a-f-]{36}$/.test(r[0]));

async function control<T>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: ownerUrl(t.harness, t.harness.primaryPort, t.database) });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

/** A schema tenant with `n` projects, written straight into its schema. */
async function bigSchemaTenant(n: number): Promise<TenantFixture> {
  const tenant = await createTenant(t, { tier: 'schema' });
  await withSuperuser(t.harness, t.harness.primaryPort, t.database, (c) =>
    c.query(
      `INSERT INTO "${tenantObjectName(tenant.id)}".projects (organization_id, id, name)
       SELECT $1, gen_random_uuid(), 'bulk ' || i FROM generate_series(1, $2::int) i`,
      [tenant.id, n],
    ),
  );
  return tenant;
}

/** Starts `tenants move` and kills it (SIGKILL, no chance to clean up) once its copy is under way. */
async function killMidCopy(tenant: TenantFixture): Promise<string> {
  const child: ChildProcess = spawn(fromRoot('node_modules', '.bin', 'node'), [fromRoot('dist', 'src', 'cli.js'), 'tenants', 'move', tenant.slug, '--to', 'dedicated', '--server', 'secondary'], {
    cwd,
    env,
    stdio: 'ignore',
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const until = Date.now() + 30_000;
  for (;;) {
    const rows = await control<{ id: string; phase: string; rows_copied: string }>(
      `SELECT id, phase, rows_copied FROM control.tenant_moves WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 1`,
      [tenant.id],
    );
    if (rows[0]?.phase === 'copying' && Number(rows[0].rows_copied) > 0) {
      child.kill('SIGKILL');
      await exited;
      return rows[0].id;
    }
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`the move never reached its copy: ${JSON.stringify(rows)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function databaseExists(port: number, name: string): Promise<boolean> {
  return withSuperuser(t.harness, port, 'postgres', async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1);
}

describe('tenants move and moves, from the CLI', () => {
  it('moves a tenant with a progress bar, a result table and its verification', async () => {
    const tenant = await bigSchemaTenant(500);
    const run = await cli('tenants', 'move', tenant.slug, '--to', 'shared');
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/move \[.*\] \d+% \| \d+\/500 rows \| ETA/);
    expect(run.stderr).toMatch(/moved: now shared on primary; writes were frozen for \d+ ms/);
    const [row] = moveRows(run.stdout);
    expect(row[1]).toBe('flipped');
    expect(row[4]).toBe('500/500');
    const verification = tableRows(run.stdout);
    expect(verification.find((r) => r[0] === 'projects')).toEqual(['projects', '500', '500', expect.any(String), expect.any(String), 'yes']);
    const admin = await t.admin();
    expect((await admin.get(`/tenants/${tenant.id}`)).body.placement).toEqual({ tier: 'shared', server: 'primary' });

    const list = await cli('moves', 'list', tenant.slug);
    expect(list.code).toBe(0);
    expect(moveRows(list.stdout)).toHaveLength(1);
    const cleaned = await cli('moves', 'cleanup', row[0]);
    expect(cleaned.code).toBe(0);
    expect(moveRows(cleaned.stdout)[0][1]).toBe('cleaned');
  });

  it('says what is wrong: bad usage exits 2, an unknown tenant or a refused move exits 1', async () => {
    const bad = await cli('tenants', 'move', 'whoever', '--to', 'cloud');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("Allowed choices are shared, schema, dedicated");
    const unknown = await cli('tenants', 'move', 'no-such-tenant', '--to', 'schema');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("no tenant has the slug 'no-such-tenant'");
    const tenant = await createTenant(t, { tier: 'shared' });
    const same = await cli('tenants', 'move', tenant.slug, '--to', 'shared');
    expect(same.code).toBe(1);
    expect(same.stderr).toMatch(/MOVE_SAME_PLACEMENT: .* already lives there/);
    expect((await cli('moves', 'resume', 'not-a-uuid')).code).toBe(2);
    expect((await cli('moves', 'cleanup')).code).toBe(2);
    for (const run of [bad, unknown, same]) expect(run.stderr).not.toMatch(/^\s+at /m);
  });

  it("refuses a tier the tenant's plan does not include, naming the plan and its tiers; --ignore-plan overrides", async () => {
    const tenant = await createTenant(t, { tier: 'shared', plan: 'free' });
    const refused = await cli('tenants', 'move', tenant.slug, '--to', 'schema');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('error: PLAN_TIER_NOT_ALLOWED: the free plan does not include the schema tier (it includes: shared); upgrade the plan first');
    expect(refused.stderr).toContain(`(change the plan: npm run cli -- billing set-plan ${tenant.slug} <plan>; or pass --ignore-plan to move it anyway)`);
    expect(await control('SELECT 1 FROM control.tenant_moves WHERE tenant_id = $1', [tenant.id])).toEqual([]);
    expect((await cli('tenants', 'move', '--help')).stdout).toContain('--ignore-plan');

    const overridden = await cli('tenants', 'move', tenant.slug, '--to', 'schema', '--ignore-plan');
    expect(overridden.code).toBe(0);
    expect(overridden.stderr).toMatch(/moved: now schema \S+ on primary/);
    expect(await control('SELECT tier FROM control.tenants WHERE id = $1', [tenant.id])).toEqual([{ tier: 'schema' }]);
    // The override is on the record.
    expect(
      await control(`SELECT metadata->'planChecked' AS checked FROM control.platform_audit_log WHERE tenant_id = $1 AND action = 'tenant.move_requested'`, [tenant.id]),
    ).toEqual([{ checked: false }]);
  });
});

describe('a move whose process is killed mid-copy', () => {
  it('leaves the tenant serving from its source, then resumes to a verified flip', async () => {
    const tenant = await bigSchemaTenant(20_000);
    const id = await killMidCopy(tenant);
    const admin = await t.admin();

    const status = await admin.get(`/tenants/${tenant.id}/moves/${id}`);
    expect(status.body).toMatchObject({ phase: 'copying', state: 'interrupted' });
    expect(status.body.rowsCopied).toBeGreaterThan(0);
    expect(status.body.rowsCopied).toBeLessThan(20_000);
    expect((await admin.get(`/tenants/${tenant.id}`)).body.placement).toEqual({ tier: 'schema', server: 'primary' });
    // Reads and writes go on at the source.
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/projects?limit=5`)).status).toBe(200);
    const written = await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: 'written while the move was down' });
    expect(written.status).toBe(201);

    const resumed = await cli('moves', 'resume', id);
    expect(resumed.code).toBe(0);
    const [row] = moveRows(resumed.stdout);
    expect(row.slice(0, 2)).toEqual([id, 'flipped']);
    const after = await admin.get(`/tenants/${tenant.id}/moves/${id}`);
    expect(after.body.verification.ok).toBe(true);
    expect(after.body.verification.tables.projects.target.rows).toBe(20_001);
    expect((await admin.get(`/tenants/${tenant.id}`)).body.placement).toEqual({ tier: 'dedicated', server: 'secondary' });
    expect((await tenant.owner.get(`/orgs/${tenant.slug}/projects/${written.body.id}`)).body.name).toBe('written while the move was down');
  });

  it('or rolls back cleanly: the target database is dropped and the tenant stays', async () => {
    const tenant = await bigSchemaTenant(20_000);
    const id = await killMidCopy(tenant);
    expect(await databaseExists(t.harness.secondaryPort, tenantObjectName(tenant.id))).toBe(true);
    const shown = await cli('moves', 'show', id);
    expect(shown.stderr).toContain('interrupted: resume or abort it');

    const aborted = await cli('moves', 'abort', id);
    expect(aborted.code).toBe(0);
    expect(moveRows(aborted.stdout)[0][1]).toBe('aborted');
    expect(await databaseExists(t.harness.secondaryPort, tenantObjectName(tenant.id))).toBe(false);
    const admin = await t.admin();
    expect((await admin.get(`/tenants/${tenant.id}`)).body.placement).toEqual({ tier: 'schema', server: 'primary' });
    expect((await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: 'after the roll-back' })).status).toBe(201);
    // A rolled-back move cannot be resumed.
    const again = await cli('moves', 'resume', id);
    expect(again.code).toBe(1);
  });
});
