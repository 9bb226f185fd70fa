import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigurationError, loadConfig } from '../../config/configuration.js';
import { fromRoot } from '../../config/paths.js';

/** Configuration is validated once, at start-up, and a bad variable stops the app with its name. */

const SECRET = 'j'.repeat(32);

/** The ConfigurationError loadConfig throws for env (fails the test if it throws nothing or something else). */
function refusal(env: Record<string, string>): ConfigurationError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigurationError) return err;
    throw err;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  it('has a working default for everything', () => {
    expect(loadConfig({})).toEqual({
      env: 'development',
      port: 3000,
      host: '0.0.0.0',
      logLevel: 'info',
      database: {
        appUser: 'tenancy_app',
        embeddedDir: '.data/postgres',
        embeddedPort: 54320,
        poolMax: 20,
        dedicatedPoolMax: 20,
        maxConnections: 80,
        poolIdleMs: 30_000,
      },
      routingCacheTtlMs: 60_000,
      auth: { jwtTtlSeconds: 43_200, platformAdminEmails: [], supportStaffEmails: [], devLoginEnabled: true },
      support: { grantMaxMinutes: 60 },
      tenantProviderScope: 'singleton',
      lifecycle: { deletionGraceDays: 30, sweepIntervalMs: 60_000, moveCleanupDelaySeconds: 3600, moveFreezeWaitMs: 10_000, moveBatchRows: 50_000 },
      migrations: { onStart: true, waves: [1, 10], concurrency: 4 },
      workos: { redirectUri: 'http://localhost:3000/auth/sso/callback', stateTtlSeconds: 600, events: { pollMs: 5000, maxAttempts: 8, retryBaseMs: 1000 } },
      billing: { trialDays: 14, pastDueGraceDays: 7, stripe: { toleranceSeconds: 300 } },
      usage: { flushIntervalMs: 10_000, snapshotIntervalMs: 3_600_000 },
      limits: { userRatePercent: 50, bulkheadWaitMs: 1000 },
      testRoutes: false,
      benchSkipSessionCheck: false,
      benchSkipAudit: false,
      benchSkipBilling: false,
    });
  });

  it('refuses test routes in production, and skipping billing outside a benchmark', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32), TEST_ROUTES_ENABLED: 'true' })).toThrow(/TEST_ROUTES_ENABLED: test routes cannot be enabled/);
    expect(() => loadConfig({ BENCH_SKIP_BILLING: 'true' })).toThrow(/BENCH_SKIP_BILLING: only for benchmarks/);
    expect(() => loadConfig({ BILLING_DEFAULT_PLAN: 'Not A Plan' })).toThrow(/BILLING_DEFAULT_PLAN must be a plan key/);
    expect(() => loadConfig({ RATE_LIMIT_USER_PERCENT: '0' })).toThrow(/RATE_LIMIT_USER_PERCENT/);
  });

  it('reads the WorkOS settings: SSO is off without a key, a client id is required with one', () => {
    expect(loadConfig({}).workos.apiKey).toBeUndefined();
    const c = loadConfig({ WORKOS_API_KEY: 'sk_test_abcdefgh', WORKOS_CLIENT_ID: 'client_abc', WORKOS_API_HOST: 'http://127.0.0.1:4010' });
    expect(c.workos).toMatchObject({ apiKey: 'sk_test_abcdefgh', clientId: 'client_abc', apiHost: { hostname: '127.0.0.1', port: 4010, https: false } });
    expect(loadConfig({ WORKOS_API_HOST: 'api.example.test' }).workos.apiHost).toEqual({ hostname: 'api.example.test', port: undefined, https: true });
    expect(loadConfig({ WORKOS_API_HOST: '127.0.0.1:8484' }).workos.apiHost).toEqual({ hostname: '127.0.0.1', port: 8484, https: false });
    expect(() => loadConfig({ WORKOS_API_KEY: 'sk_test_abcdefgh' })).toThrow(/WORKOS_CLIENT_ID is required when WORKOS_API_KEY is set/);
    expect(() => loadConfig({ WORKOS_REDIRECT_URI: 'not a url' })).toThrow(/WORKOS_REDIRECT_URI must be an http\(s\) URL/);
    expect(() => loadConfig({ WORKOS_API_HOST: 'http://x y' })).toThrow(/WORKOS_API_HOST/);
  });

  it('refuses to skip session checks outside a benchmark', () => {
    expect(() => loadConfig({ BENCH_SKIP_SESSION_CHECK: 'true' })).toThrow(/BENCH_SKIP_SESSION_CHECK: only for benchmarks/);
    expect(loadConfig({ BENCH_SKIP_SESSION_CHECK: 'true', BENCH_BASELINE_DATABASE_URL: 'postgres://x@y/z' }).benchSkipSessionCheck).toBe(true);
  });

  it('reads the lifecycle and rollout settings, and names a bad one', () => {
    const c = loadConfig({ MIGRATION_WAVES: '1, 5,50', MIGRATE_ON_START: 'false', MOVE_CLEANUP_DELAY_SECONDS: '0', TENANT_DELETION_GRACE_DAYS: '7' });
    expect(c.migrations).toEqual({ onStart: false, waves: [1, 5, 50], concurrency: 4 });
    expect(c.lifecycle).toMatchObject({ moveCleanupDelaySeconds: 0, deletionGraceDays: 7 });
    expect(() => loadConfig({ MIGRATION_WAVES: '1,ten' })).toThrow(/MIGRATION_WAVES must be a comma-separated list of whole numbers/);
    expect(() => loadConfig({ MIGRATION_WAVES: '0' })).toThrow(/MIGRATION_WAVES sizes must be at least 1/);
    expect(() => loadConfig({ MOVE_FREEZE_WAIT_MS: '5' })).toThrow(/MOVE_FREEZE_WAIT_MS/);
    expect(() => loadConfig({ MIGRATE_ON_START: 'maybe' })).toThrow(/MIGRATE_ON_START must be true or false/);
  });

  it('reads only the environment it is given', () => {
    const saved = process.env.PORT;
    process.env.PORT = 'abc';
    try {
      expect(loadConfig({ PORT: '8080' }).port).toBe(8080);
      expect(loadConfig({}).port).toBe(3000);
    } finally {
      if (saved === undefined) delete process.env.PORT;
      else process.env.PORT = saved;
    }
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ PORT: '', DB_POOL_MAX: '', NODE_ENV: '', DATABASE_URL: '', JWT_SECRET: '', PLATFORM_ADMIN_EMAILS: '' })).toEqual(loadConfig({}));
  });

  it('converts what it reads', () => {
    const c = loadConfig({
      NODE_ENV: 'test',
      PORT: '8080',
      DB_POOL_MAX: '7',
      PLATFORM_ADMIN_EMAILS: ' Admin@Platform.test , second@platform.test ,',
      DEV_LOGIN_ENABLED: 'false',
      DATABASE_URL: 'postgres://owner@db.internal:5432/app',
      DATABASE_APP_PASSWORD: 'app-password',
      TENANT_PROVIDER_SCOPE: 'request',
    });
    expect(c).toMatchObject({
      env: 'test',
      port: 8080,
      database: { poolMax: 7, url: 'postgres://owner@db.internal:5432/app', appPassword: 'app-password' },
      auth: { platformAdminEmails: ['admin@platform.test', 'second@platform.test'], devLoginEnabled: false },
      tenantProviderScope: 'request',
    });
  });

  it.each([
    ['PORT', { PORT: 'abc' }],
    ['PORT', { PORT: '70000' }],
    ['PORT', { PORT: '-1' }],
    ['PORT', { PORT: '80.5' }],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://x', DATABASE_APP_PASSWORD: 'app-password' }],
    ['DATABASE_SECONDARY_URL', { DATABASE_URL: 'postgres://h/db', DATABASE_APP_PASSWORD: 'app-password', DATABASE_SECONDARY_URL: 'http://h' }],
    ['DB_POOL_MAX', { DB_POOL_MAX: '0' }],
    ['DB_POOL_MAX', { DB_POOL_MAX: 'many' }],
    ['DB_MAX_CONNECTIONS', { DB_MAX_CONNECTIONS: '1' }],
    ['NODE_ENV', { NODE_ENV: 'staging' }],
    ['LOG_LEVEL', { LOG_LEVEL: 'verbose' }],
    ['PLATFORM_ADMIN_EMAILS', { PLATFORM_ADMIN_EMAILS: 'not-an-email' }],
    ['PLATFORM_ADMIN_EMAILS', { PLATFORM_ADMIN_EMAILS: 'admin@platform.test,not-an-email' }],
    ['TENANT_PROVIDER_SCOPE', { TENANT_PROVIDER_SCOPE: 'x' }],
    ['DEV_LOGIN_ENABLED', { DEV_LOGIN_ENABLED: 'yes' }],
    ['DATABASE_APP_USER', { DATABASE_APP_USER: 'App User' }],
    ['JWT_SECRET', { JWT_SECRET: 'too-short' }],
  ])('refuses a bad %s (%j), naming it', (name, env) => {
    const err = refusal(env);
    expect(err.message).toContain(name);
    // Every problem it lists is about that variable: nothing else was wrong.
    expect(err.problems.length).toBeGreaterThan(0);
    for (const problem of err.problems) expect(problem).toContain(name);
  });

  it('names every bad variable at once', () => {
    const err = refusal({ PORT: 'abc', NODE_ENV: 'staging', DB_POOL_MAX: '0' });
    for (const name of ['PORT', 'NODE_ENV', 'DB_POOL_MAX']) expect(err.message).toContain(name);
  });

  describe('in production', () => {
    it('requires JWT_SECRET', () => {
      expect(refusal({ NODE_ENV: 'production' }).message).toMatch(/JWT_SECRET is required in production/);
    });

    it('requires JWT_SECRET to be at least 32 characters', () => {
      expect(refusal({ NODE_ENV: 'production', JWT_SECRET: 'j'.repeat(31) }).message).toMatch(/JWT_SECRET must be at least 32 characters/);
      expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET }).auth.jwtSecret).toBe(SECRET);
    });

    it('turns the development login off by default and refuses to turn it on', () => {
      expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET }).auth.devLoginEnabled).toBe(false);
      for (const on of ['true', '1']) {
        const err = refusal({ NODE_ENV: 'production', JWT_SECRET: SECRET, DEV_LOGIN_ENABLED: on });
        expect(err.problems).toEqual([expect.stringContaining('DEV_LOGIN_ENABLED')]);
      }
    });
  });

  describe('an external database', () => {
    it('needs DATABASE_APP_PASSWORD with DATABASE_URL', () => {
      const err = refusal({ DATABASE_URL: 'postgres://owner@db.internal/app' });
      expect(err.message).toContain('DATABASE_APP_PASSWORD');
      expect(err.problems.every((p) => p.includes('DATABASE_APP_PASSWORD'))).toBe(true);
      expect(refusal({ DATABASE_URL: 'postgres://owner@db.internal/app', DATABASE_APP_PASSWORD: 'short' }).message).toContain('DATABASE_APP_PASSWORD');
    });

    it('needs DATABASE_URL with DATABASE_SECONDARY_URL', () => {
      expect(refusal({ DATABASE_SECONDARY_URL: 'postgres://other@db2.internal/app' }).problems).toEqual([
        expect.stringContaining('DATABASE_SECONDARY_URL'),
      ]);
    });

    it('does not want a password for the embedded servers', () => {
      expect(loadConfig({}).database.appPassword).toBeUndefined();
    });
  });
});

describe('the real start-up', () => {
  it.each([
    ['PORT', { PORT: 'abc' }],
    ['JWT_SECRET', { NODE_ENV: 'production' }],
  ])('stops with status 1 and a message naming %s, before starting anything', (name, env) => {
    const dir = mkdtempSync(join(tmpdir(), 'config-startup-'));
    const pgDir = join(dir, 'postgres');
    try {
      // Run from the empty folder so no .env is read; only what is passed here is set.
      const run = spawnSync(fromRoot('node_modules', '.bin', 'node'), [fromRoot('dist', 'src', 'main.js')], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? '', EMBEDDED_PG_DIR: pgDir, ...env },
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(run.error).toBeUndefined();
      expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 1, stderr: expect.stringContaining(name) });
      expect(run.stderr).toMatch(/Invalid configuration/);
      expect(run.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
      expect(run.stdout).not.toMatch(/listening/);
      // Nothing was started or written: no embedded server folder, no generated secrets.
      expect(existsSync(pgDir)).toBe(false);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
