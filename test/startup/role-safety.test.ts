import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../config/configuration.js';
import { fromRoot } from '../../config/paths.js';
import { cloneTemplate, harnessInfo, ownerUrl, withSuperuser } from '../../libs/testing/index.js';
import { prepareDatabases, UnsafeRuntimeRoleError } from '../../src/tenancy/infrastructure.js';

/** The app refuses to start when its runtime role could get past row-level security. */
const h = harnessInfo();
const password = randomBytes(12).toString('hex');
const suffix = randomBytes(3).toString('hex');
const roles = {
  bypass: `unsafe_bypass_${suffix}`,
  superuser: `unsafe_super_${suffix}`,
  owner: `unsafe_owner_${suffix}`,
  member: `unsafe_member_${suffix}`,
};
let database: string;

beforeAll(async () => {
  database = await cloneTemplate(h);
  for (const port of [h.primaryPort, h.secondaryPort]) {
    await withSuperuser(h, port, 'postgres', async (c) => {
      await c.query(`CREATE ROLE ${roles.bypass} LOGIN BYPASSRLS PASSWORD '${password}'`);
      await c.query(`CREATE ROLE ${roles.superuser} LOGIN SUPERUSER PASSWORD '${password}'`);
      await c.query(`CREATE ROLE ${roles.owner} LOGIN PASSWORD '${password}'`);
      // Harmless itself, but it may SET ROLE to a role that bypasses RLS.
      await c.query(`CREATE ROLE ${roles.member} LOGIN NOINHERIT PASSWORD '${password}' IN ROLE ${roles.bypass}`);
    });
  }
  // A role that owns a table: FORCE RLS would be all that stands between it and the rows.
  await withSuperuser(h, h.primaryPort, database, async (c) => {
    await c.query(`CREATE TABLE public.owned_by_app (id int)`);
    await c.query(`ALTER TABLE public.owned_by_app OWNER TO ${roles.owner}`);
  });
});

afterAll(async () => {
  for (const port of [h.primaryPort, h.secondaryPort]) {
    await withSuperuser(h, port, 'postgres', async (c) => {
      if (port === h.primaryPort) await c.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      for (const r of [roles.member, roles.bypass, roles.superuser, roles.owner]) await c.query(`DROP ROLE IF EXISTS ${r}`);
    });
  }
});

function envFor(appUser: string): Record<string, string> {
  return {
    NODE_ENV: 'test',
    DATABASE_URL: ownerUrl(h, h.primaryPort, database),
    DATABASE_SECONDARY_URL: ownerUrl(h, h.secondaryPort, 'postgres'),
    DATABASE_APP_USER: appUser,
    DATABASE_APP_PASSWORD: password,
    JWT_SECRET: 'x'.repeat(40),
  };
}

describe('start-up refuses an unsafe runtime role', () => {
  it.each([
    ['BYPASSRLS', () => roles.bypass, /has BYPASSRLS/],
    ['superuser', () => roles.superuser, /is a superuser/],
    ['table owner', () => roles.owner, /owns 1 table/],
    ['member of a BYPASSRLS role', () => roles.member, /is a member of "unsafe_bypass_\w+"/],
  ])('refuses a %s', async (_, role, reason) => {
    const attempt = prepareDatabases(loadConfig(envFor(role())));
    await expect(attempt).rejects.toBeInstanceOf(UnsafeRuntimeRoleError);
    await expect(prepareDatabases(loadConfig(envFor(role())))).rejects.toThrow(reason);
  });

  it('the real process exits with status 1 and says why, before listening', () => {
    const run = spawnSync(process.execPath, [fromRoot('dist', 'src', 'main.js')], {
      env: { ...envFor(roles.bypass), PATH: process.env.PATH ?? '', PORT: '0' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/refusing to start: the runtime database role could bypass row-level security: role "unsafe_bypass_\w+" has BYPASSRLS/);
    expect(run.stderr).not.toContain(password);
    expect(run.stdout).not.toMatch(/listening/);
  });

  it('starts with the real runtime role', async () => {
    const runtime = await prepareDatabases(loadConfig({ ...envFor(h.appUser), DATABASE_APP_PASSWORD: h.appPassword }));
    expect([...runtime.servers.keys()]).toEqual(['primary', 'secondary']);
    await runtime.stop();
  });
});
