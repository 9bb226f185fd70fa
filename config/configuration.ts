import 'reflect-metadata';
import { plainToInstance, Transform } from 'class-transformer';
import {
  IsBoolean,
  IsEmail,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  Min,
  MinLength,
  ValidateIf,
  validateSync,
  ValidationError,
} from 'class-validator';

const toInt = ({ value }: { value: unknown }) =>
  value === undefined || value === '' ? undefined : Number(value);
const toBool = ({ value }: { value: unknown }) => {
  if (value === undefined || value === '') return undefined;
  if (value === true || value === 'true' || value === '1') return true;
  if (value === false || value === 'false' || value === '0') return false;
  return value;
};
const toList = ({ value }: { value: unknown }) =>
  typeof value === 'string'
    ? value
        .split(',')
        .map((s) => s.trim().toLowerCase())
        .filter(Boolean)
    : value;
const emptyToUndefined = ({ value }: { value: unknown }) => (value === '' ? undefined : value);

export const TENANT_PROVIDER_SCOPES = ['singleton', 'durable', 'request'] as const;
export type TenantProviderScope = (typeof TENANT_PROVIDER_SCOPES)[number];

const POSTGRES_URL = /^postgres(ql)?:\/\/[^\s]+$/;

/** Raw environment, validated once at start-up. Nothing else reads process.env. */
export class EnvironmentVariables {
  @IsIn(['development', 'production', 'test'])
  NODE_ENV: 'development' | 'production' | 'test' = 'development';

  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(65535)
  PORT = 3000;

  @IsString()
  HOST = '0.0.0.0';

  @IsIn(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
  LOG_LEVEL = 'info';

  /** Owner-role URL of the primary server (control plane + shared tier). Unset: embedded PostgreSQL. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @Matches(POSTGRES_URL, { message: 'DATABASE_URL must be a postgres:// URL' })
  DATABASE_URL?: string;

  /** Owner-role URL of a second server for dedicated tenants. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @Matches(POSTGRES_URL, { message: 'DATABASE_SECONDARY_URL must be a postgres:// URL' })
  DATABASE_SECONDARY_URL?: string;

  /** The runtime role: not superuser, no BYPASSRLS, owns no tables. */
  @Matches(/^[a-z_][a-z0-9_]{0,62}$/, { message: 'DATABASE_APP_USER must be a plain lowercase role name' })
  DATABASE_APP_USER = 'tenancy_app';

  @Transform(emptyToUndefined)
  @ValidateIf((env: EnvironmentVariables) => env.DATABASE_URL !== undefined)
  @IsString({ message: 'DATABASE_APP_PASSWORD is required when DATABASE_URL is set' })
  @MinLength(8, { message: 'DATABASE_APP_PASSWORD must be at least 8 characters' })
  DATABASE_APP_PASSWORD?: string;

  @IsString()
  EMBEDDED_PG_DIR = '.data/postgres';

  @Transform(toInt)
  @IsInt()
  @Min(1024)
  @Max(65534)
  EMBEDDED_PG_PORT = 54320;

  /** Connections per shared database pool (shared tier and schema tenants share it). */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(500)
  DB_POOL_MAX = 20;

  /** Most connections one dedicated database's pool grows to (it starts with one). */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(100)
  DB_DEDICATED_POOL_MAX = 20;

  /** Cap on connections held by all tenant pools together. */
  @Transform(toInt)
  @IsInt()
  @Min(2)
  @Max(10000)
  DB_MAX_CONNECTIONS = 80;

  @Transform(toInt)
  @IsInt()
  @Min(100)
  DB_POOL_IDLE_MS = 30_000;

  @Transform(toInt)
  @IsInt()
  @Min(0)
  ROUTING_CACHE_TTL_MS = 60_000;

  @Transform(emptyToUndefined)
  @ValidateIf((env: EnvironmentVariables) => env.NODE_ENV === 'production' || env.JWT_SECRET !== undefined)
  @IsString({ message: 'JWT_SECRET is required in production' })
  @MinLength(32, { message: 'JWT_SECRET must be at least 32 characters' })
  JWT_SECRET?: string;

  @Transform(toInt)
  @IsInt()
  @Min(60)
  JWT_TTL_SECONDS = 12 * 3600;

  @Transform(toList)
  @IsEmail({}, { each: true, message: 'PLATFORM_ADMIN_EMAILS must be a comma-separated list of emails' })
  PLATFORM_ADMIN_EMAILS: string[] = [];

  /** Platform support staff: they reach into a tenant only through an explicit, expiring, audited grant. */
  @Transform(toList)
  @IsEmail({}, { each: true, message: 'SUPPORT_STAFF_EMAILS must be a comma-separated list of emails' })
  SUPPORT_STAFF_EMAILS: string[] = [];

  /** Longest a support grant may last, in minutes. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(1440)
  SUPPORT_GRANT_MAX_MINUTES = 60;

  @Transform(toBool)
  @IsOptional()
  @IsBoolean({ message: 'DEV_LOGIN_ENABLED must be true or false' })
  DEV_LOGIN_ENABLED?: boolean;

  /** How TenantConnectionProvider is instantiated; see BENCHMARKS.md for why singleton is the default. */
  @IsIn(TENANT_PROVIDER_SCOPES, { message: `TENANT_PROVIDER_SCOPE must be one of: ${TENANT_PROVIDER_SCOPES.join(', ')}` })
  TENANT_PROVIDER_SCOPE: TenantProviderScope = 'singleton';

  /** Days a deleted tenant stays restorable (pending deletion) before its data is purged. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(3650)
  TENANT_DELETION_GRACE_DAYS = 30;

  /** How often each app instance looks for due purges and move clean-ups; 0 turns the sweeper off. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  LIFECYCLE_SWEEP_INTERVAL_MS = 60_000;

  /** How long a moved tenant's source (rows, schema or database) is kept before it is cleaned up. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  MOVE_CLEANUP_DELAY_SECONDS = 3600;

  /** Longest a move waits for writes under way when it freezes writes; past it the cutover is abandoned and retried. */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  @Max(600_000)
  MOVE_FREEZE_WAIT_MS = 10_000;

  /** Rows per copy batch of a move (each batch is committed and checkpointed, so a resumed move starts after it). */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(10_000_000)
  MOVE_BATCH_ROWS = 50_000;

  /** Apply migrations to every placement when the app starts (small installs); off: run `npm run migrate` first. */
  @Transform(toBool)
  @IsBoolean({ message: 'MIGRATE_ON_START must be true or false' })
  MIGRATE_ON_START = true;

  /** Wave sizes of a tenant migration rollout, after which come all remaining placements. */
  @Transform(({ value }: { value: unknown }) =>
    typeof value === 'string' ? value.split(',').map((v) => (v.trim() === '' ? NaN : Number(v))) : value,
  )
  @IsInt({ each: true, message: 'MIGRATION_WAVES must be a comma-separated list of whole numbers, e.g. 1,10' })
  @Min(1, { each: true, message: 'MIGRATION_WAVES sizes must be at least 1' })
  MIGRATION_WAVES: number[] = [1, 10];

  /** Placements migrated at the same time. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(64)
  MIGRATION_CONCURRENCY = 4;

  /** WorkOS (enterprise SSO and directory sync). Without an API key and client id, SSO is off. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  @MinLength(8, { message: 'WORKOS_API_KEY must be at least 8 characters' })
  WORKOS_API_KEY?: string;

  @Transform(emptyToUndefined)
  @ValidateIf((env: EnvironmentVariables) => env.WORKOS_API_KEY !== undefined)
  @IsString({ message: 'WORKOS_CLIENT_ID is required when WORKOS_API_KEY is set' })
  @Matches(/^client_[A-Za-z0-9_]+$/, { message: 'WORKOS_CLIENT_ID must look like client_…' })
  WORKOS_CLIENT_ID?: string;

  /** Secret of the WorkOS webhook endpoint: deliveries are verified with it. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  @MinLength(8, { message: 'WORKOS_WEBHOOK_SECRET must be at least 8 characters' })
  WORKOS_WEBHOOK_SECRET?: string;

  /** Where WorkOS sends people back after sign-in: this app's /auth/sso/callback. */
  @IsString()
  @Matches(/^https?:\/\/[^\s]+$/, { message: 'WORKOS_REDIRECT_URI must be an http(s) URL' })
  WORKOS_REDIRECT_URI = 'http://localhost:3000/auth/sso/callback';

  /** How often each app instance looks for due WorkOS events (retries, and events another instance stored); 0: never (the CLI drains them). */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  WORKOS_EVENTS_POLL_MS = 5_000;

  /** Attempts at processing one WorkOS event before it is marked failed. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(50)
  WORKOS_EVENTS_MAX_ATTEMPTS = 8;

  /** Delay before the first retry of a WorkOS event; it doubles with every attempt (at most 10 minutes). */
  @Transform(toInt)
  @IsInt()
  @Min(10)
  @Max(600_000)
  WORKOS_EVENTS_RETRY_BASE_MS = 1_000;

  /** Another WorkOS API host, e.g. the local stand-in 127.0.0.1:8484 (a bare host is HTTPS, except on loopback; default: api.workos.com). */
  @Transform(emptyToUndefined)
  @IsOptional()
  @Matches(/^(https?:\/\/)?[a-zA-Z0-9.-]+(:\d{1,5})?\/?$/, { message: 'WORKOS_API_HOST must be host[:port] or http(s)://host[:port]' })
  WORKOS_API_HOST?: string;

  /** How long a sign-in may take between authorize and callback. */
  @Transform(toInt)
  @IsInt()
  @Min(30)
  @Max(3600)
  SSO_STATE_TTL_SECONDS = 600;

  /** Plan of a new tenant when none is named; unset: the cheapest plan that allows its tier. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @Matches(/^[a-z][a-z0-9_-]{0,39}$/, { message: 'BILLING_DEFAULT_PLAN must be a plan key such as free, pro or enterprise' })
  BILLING_DEFAULT_PLAN?: string;

  /** Days a new tenant is on trial; 0: new tenants start active. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(365)
  BILLING_TRIAL_DAYS = 14;

  /** Days a past-due tenant (or one whose trial ended unpaid) keeps writing before it turns read-only. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(365)
  BILLING_PAST_DUE_GRACE_DAYS = 7;

  /** Stripe secret API key (sk_...); only needed to call Stripe, not to receive its webhooks. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  @MinLength(8, { message: 'STRIPE_API_KEY must be at least 8 characters' })
  STRIPE_API_KEY?: string;

  /** Signing secret of the Stripe webhook endpoint (whsec_...); unset: POST /webhooks/stripe answers 503. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  @MinLength(8, { message: 'STRIPE_WEBHOOK_SECRET must be at least 8 characters' })
  STRIPE_WEBHOOK_SECRET?: string;

  /** Oldest a Stripe webhook signature may be, in seconds (older deliveries are refused as replays). */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(3600)
  STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300;

  /** How often each instance adds its in-memory usage counters to usage_daily. */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  @Max(3_600_000)
  USAGE_FLUSH_INTERVAL_MS = 10_000;

  /** How often the sweeper snapshots rows stored and active seats per tenant; 0: never. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  USAGE_SNAPSHOT_INTERVAL_MS = 3_600_000;

  /** Share of its tenant's requests per minute one user may make, in percent. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(100)
  RATE_LIMIT_USER_PERCENT = 50;

  /** How long a request over its tenant's concurrency cap waits for a slot before it gets 429. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(60_000)
  BULKHEAD_WAIT_MS = 1_000;

  /** Test and bench only: routes that misbehave on purpose (a slow query). Refused in production. */
  @Transform(toBool)
  @IsOptional()
  @IsBoolean({ message: 'TEST_ROUTES_ENABLED must be true or false' })
  TEST_ROUTES_ENABLED?: boolean;

  /** Bench only (with BENCH_BASELINE_DATABASE_URL): no usage metering, rate limits or plan limit checks, to measure what they cost. */
  @Transform(toBool)
  @IsOptional()
  @IsBoolean({ message: 'BENCH_SKIP_BILLING must be true or false' })
  BENCH_SKIP_BILLING?: boolean;

  /** Bench only (with BENCH_BASELINE_DATABASE_URL): accept any validly signed token without checking its session, to measure what the check costs. */
  @Transform(toBool)
  @IsOptional()
  @IsBoolean({ message: 'BENCH_SKIP_SESSION_CHECK must be true or false' })
  BENCH_SKIP_SESSION_CHECK?: boolean;

  /** Bench only (with BENCH_BASELINE_DATABASE_URL): write no tenant audit entries, to measure what auditing costs. */
  @Transform(toBool)
  @IsOptional()
  @IsBoolean({ message: 'BENCH_SKIP_AUDIT must be true or false' })
  BENCH_SKIP_AUDIT?: boolean;

  /** Bench only: URL of a role that bypasses RLS, enabling the no-tenancy baseline route. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @Matches(POSTGRES_URL, { message: 'BENCH_BASELINE_DATABASE_URL must be a postgres:// URL' })
  BENCH_BASELINE_DATABASE_URL?: string;
}

export class ConfigurationError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigurationError';
  }
}

function describe(errors: ValidationError[]): string[] {
  return errors.flatMap((e) =>
    Object.values(e.constraints ?? {}).map((msg) => (msg.includes(e.property) ? msg : `${e.property}: ${msg}`)),
  );
}

export interface AppConfig {
  env: 'development' | 'production' | 'test';
  port: number;
  host: string;
  logLevel: string;
  database: {
    url?: string;
    secondaryUrl?: string;
    appUser: string;
    appPassword?: string;
    embeddedDir: string;
    embeddedPort: number;
    poolMax: number;
    dedicatedPoolMax: number;
    maxConnections: number;
    poolIdleMs: number;
  };
  routingCacheTtlMs: number;
  auth: {
    jwtSecret?: string;
    jwtTtlSeconds: number;
    platformAdminEmails: string[];
    supportStaffEmails: string[];
    devLoginEnabled: boolean;
  };
  support: { grantMaxMinutes: number };
  tenantProviderScope: TenantProviderScope;
  lifecycle: {
    deletionGraceDays: number;
    sweepIntervalMs: number;
    moveCleanupDelaySeconds: number;
    moveFreezeWaitMs: number;
    moveBatchRows: number;
  };
  migrations: {
    onStart: boolean;
    waves: number[];
    concurrency: number;
  };
  workos: {
    apiKey?: string;
    clientId?: string;
    webhookSecret?: string;
    redirectUri: string;
    apiHost?: { hostname: string; port?: number; https: boolean };
    stateTtlSeconds: number;
    /** Processing of stored webhook and reconciled events (see DirectorySyncProcessor). */
    events: { pollMs: number; maxAttempts: number; retryBaseMs: number };
  };
  billing: {
    defaultPlan?: string;
    trialDays: number;
    pastDueGraceDays: number;
    stripe: { apiKey?: string; webhookSecret?: string; toleranceSeconds: number };
  };
  usage: { flushIntervalMs: number; snapshotIntervalMs: number };
  limits: { userRatePercent: number; bulkheadWaitMs: number };
  testRoutes: boolean;
  benchBaselineUrl?: string;
  benchSkipSessionCheck: boolean;
  benchSkipAudit: boolean;
  benchSkipBilling: boolean;
}

function parseApiHost(value: string | undefined): AppConfig['workos']['apiHost'] {
  if (!value) return undefined;
  // A bare host means HTTPS, except on loopback (the local stand-in), where it means plain HTTP.
  const loopback = /^(127\.0\.0\.1|localhost|\[::1\])(:|$)/.test(value);
  const url = new URL(/^https?:\/\//.test(value) ? value : `${loopback ? 'http' : 'https'}://${value}`);
  return { hostname: url.hostname, port: url.port ? Number(url.port) : undefined, https: url.protocol === 'https:' };
}

/** Validates an environment (process.env by default) and returns typed configuration, or throws naming each bad variable. */
export function loadConfig(source: Record<string, string | undefined> = process.env): AppConfig {
  // An empty variable means unset. Dropped here, not in a @Transform: a transform's undefined
  // replaces the default instead of falling back to it (PORT= was refused as not an integer).
  const given = Object.fromEntries(Object.entries(source).filter(([, value]) => value !== ''));
  const env = plainToInstance(EnvironmentVariables, given, { exposeDefaultValues: true });
  const problems = describe(validateSync(env, { skipMissingProperties: false }));
  const isProd = env.NODE_ENV === 'production';
  if (isProd && env.DEV_LOGIN_ENABLED === true) {
    problems.push('DEV_LOGIN_ENABLED: the development login cannot be enabled when NODE_ENV=production');
  }
  if (env.BENCH_SKIP_AUDIT && !env.BENCH_BASELINE_DATABASE_URL) {
    problems.push('BENCH_SKIP_AUDIT: only for benchmarks, together with BENCH_BASELINE_DATABASE_URL');
  }
  if (env.BENCH_SKIP_SESSION_CHECK && !env.BENCH_BASELINE_DATABASE_URL) {
    problems.push('BENCH_SKIP_SESSION_CHECK: only for benchmarks, together with BENCH_BASELINE_DATABASE_URL');
  }
  if (env.BENCH_SKIP_BILLING && !env.BENCH_BASELINE_DATABASE_URL) {
    problems.push('BENCH_SKIP_BILLING: only for benchmarks, together with BENCH_BASELINE_DATABASE_URL');
  }
  if (isProd && env.TEST_ROUTES_ENABLED === true) {
    problems.push('TEST_ROUTES_ENABLED: test routes cannot be enabled when NODE_ENV=production');
  }
  if (env.DATABASE_SECONDARY_URL && !env.DATABASE_URL) {
    problems.push('DATABASE_SECONDARY_URL: set DATABASE_URL too (a secondary server needs a primary)');
  }
  if (problems.length > 0) throw new ConfigurationError(problems);
  return {
    env: env.NODE_ENV,
    port: env.PORT,
    host: env.HOST,
    logLevel: env.LOG_LEVEL,
    database: {
      url: env.DATABASE_URL,
      secondaryUrl: env.DATABASE_SECONDARY_URL,
      appUser: env.DATABASE_APP_USER,
      appPassword: env.DATABASE_APP_PASSWORD,
      embeddedDir: env.EMBEDDED_PG_DIR,
      embeddedPort: env.EMBEDDED_PG_PORT,
      poolMax: env.DB_POOL_MAX,
      dedicatedPoolMax: env.DB_DEDICATED_POOL_MAX,
      maxConnections: env.DB_MAX_CONNECTIONS,
      poolIdleMs: env.DB_POOL_IDLE_MS,
    },
    routingCacheTtlMs: env.ROUTING_CACHE_TTL_MS,
    auth: {
      jwtSecret: env.JWT_SECRET,
      jwtTtlSeconds: env.JWT_TTL_SECONDS,
      platformAdminEmails: env.PLATFORM_ADMIN_EMAILS,
      supportStaffEmails: env.SUPPORT_STAFF_EMAILS,
      devLoginEnabled: env.DEV_LOGIN_ENABLED ?? !isProd,
    },
    support: { grantMaxMinutes: env.SUPPORT_GRANT_MAX_MINUTES },
    tenantProviderScope: env.TENANT_PROVIDER_SCOPE,
    lifecycle: {
      deletionGraceDays: env.TENANT_DELETION_GRACE_DAYS,
      sweepIntervalMs: env.LIFECYCLE_SWEEP_INTERVAL_MS,
      moveCleanupDelaySeconds: env.MOVE_CLEANUP_DELAY_SECONDS,
      moveFreezeWaitMs: env.MOVE_FREEZE_WAIT_MS,
      moveBatchRows: env.MOVE_BATCH_ROWS,
    },
    migrations: {
      onStart: env.MIGRATE_ON_START,
      waves: env.MIGRATION_WAVES,
      concurrency: env.MIGRATION_CONCURRENCY,
    },
    workos: {
      apiKey: env.WORKOS_API_KEY,
      clientId: env.WORKOS_CLIENT_ID,
      webhookSecret: env.WORKOS_WEBHOOK_SECRET,
      redirectUri: env.WORKOS_REDIRECT_URI,
      apiHost: parseApiHost(env.WORKOS_API_HOST),
      stateTtlSeconds: env.SSO_STATE_TTL_SECONDS,
      events: { pollMs: env.WORKOS_EVENTS_POLL_MS, maxAttempts: env.WORKOS_EVENTS_MAX_ATTEMPTS, retryBaseMs: env.WORKOS_EVENTS_RETRY_BASE_MS },
    },
    billing: {
      defaultPlan: env.BILLING_DEFAULT_PLAN,
      trialDays: env.BILLING_TRIAL_DAYS,
      pastDueGraceDays: env.BILLING_PAST_DUE_GRACE_DAYS,
      stripe: { apiKey: env.STRIPE_API_KEY, webhookSecret: env.STRIPE_WEBHOOK_SECRET, toleranceSeconds: env.STRIPE_WEBHOOK_TOLERANCE_SECONDS },
    },
    usage: { flushIntervalMs: env.USAGE_FLUSH_INTERVAL_MS, snapshotIntervalMs: env.USAGE_SNAPSHOT_INTERVAL_MS },
    limits: { userRatePercent: env.RATE_LIMIT_USER_PERCENT, bulkheadWaitMs: env.BULKHEAD_WAIT_MS },
    testRoutes: env.TEST_ROUTES_ENABLED === true,
    benchBaselineUrl: env.BENCH_BASELINE_DATABASE_URL,
    benchSkipBilling: env.BENCH_SKIP_BILLING === true && env.BENCH_BASELINE_DATABASE_URL !== undefined,
    benchSkipSessionCheck: env.BENCH_SKIP_SESSION_CHECK === true && env.BENCH_BASELINE_DATABASE_URL !== undefined,
    benchSkipAudit: env.BENCH_SKIP_AUDIT === true && env.BENCH_BASELINE_DATABASE_URL !== undefined,
  };
}

/** Reads ./.env when present (variables already set win), using Node's own parser. */
export function loadDotEnv(file = '.env'): void {
  try {
    process.loadEnvFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
