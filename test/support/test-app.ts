import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { AppConfig, loadConfig } from '../../config/configuration.js';
import { cloneTemplate, harnessInfo, HarnessInfo, HttpClient, ownerUrl } from '../../libs/testing/index.js';
import { createApp } from '../../src/app.js';
import { prepareDatabases } from '../../src/tenancy/infrastructure.js';
import type { DatabaseRuntime } from '../../src/tenancy/placements.js';
import { TenantPools } from '../../src/tenancy/tenant-pools.service.js';

export const PLATFORM_ADMIN = 'admin@platform.test';

export interface TestApp {
  app: NestFastifyApplication;
  config: AppConfig;
  runtime: DatabaseRuntime;
  harness: HarnessInfo;
  database: string;
  http: HttpClient;
  /** A client signed in as this email (development login). */
  login(email: string): Promise<HttpClient>;
  admin(): Promise<HttpClient>;
  /** Rows of one statement run as the platform's owner role on this app's control database (outside RLS). */
  ownerQuery<T = Record<string, any>>(sql: string, params?: unknown[]): Promise<T[]>;
  pools(): TenantPools;
  close(): Promise<void>;
}

export interface TestAppOptions {
  env?: Record<string, string>;
  /** Reuse another app's database (a second app instance on the same control plane). */
  database?: string;
}

/** The real app on a fresh clone of the migrated template database, listening on a random loopback port. */
export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const harness = harnessInfo();
  const database = options.database ?? (await cloneTemplate(harness));
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    DATABASE_URL: ownerUrl(harness, harness.primaryPort, database),
    DATABASE_SECONDARY_URL: ownerUrl(harness, harness.secondaryPort, 'postgres'),
    DATABASE_APP_USER: harness.appUser,
    DATABASE_APP_PASSWORD: harness.appPassword,
    JWT_SECRET: randomBytes(32).toString('hex'),
    PLATFORM_ADMIN_EMAILS: PLATFORM_ADMIN,
    DB_POOL_MAX: '10',
    // Tests written before plans existed assume no plan limits: new tenants default to the
    // enterprise plan here; the billing tests choose their plans explicitly.
    BILLING_DEFAULT_PLAN: 'enterprise',
    // Tests that fire many requests at one tenant at once queue at its concurrency cap; on a
    // loaded CI machine a second's wait could turn into 429s they do not test for.
    BULKHEAD_WAIT_MS: '10000',
    ...options.env,
  });
  const runtime = await prepareDatabases(config);
  const app = await createApp(config, runtime);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.getHttpServer().address() as { port: number };
  const http = new HttpClient(`http://127.0.0.1:${address.port}`);
  const login = async (email: string) => {
    const res = await http.post('/auth/dev/login', { email });
    if (res.status !== 200) throw new Error(`login failed for ${email}: ${res.status} ${JSON.stringify(res.body)}`);
    return http.as(res.body.accessToken as string);
  };
  return {
    app,
    config,
    runtime,
    harness,
    database,
    http,
    login,
    admin: () => login(PLATFORM_ADMIN),
    ownerQuery: async <T,>(sql: string, params: unknown[] = []) => {
      const c = new pg.Client({ connectionString: ownerUrl(harness, harness.primaryPort, database) });
      await c.connect();
      try {
        return (await c.query(sql, params)).rows as T[];
      } finally {
        await c.end();
      }
    },
    pools: () => app.get(TenantPools),
    close: async () => {
      await app.close();
      await runtime.stop();
    },
  };
}
