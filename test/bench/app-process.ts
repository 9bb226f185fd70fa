import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { fromRoot } from '../../config/paths.js';
import { ensureDatabase, ensurePlatformRoles, startEmbeddedCluster } from '../../libs/postgres/index.js';
import { freePort } from '../../libs/testing/index.js';

/** The real app (compiled) as a child process, ready once /health/live answers. */
export async function startApp(port: number, env: Record<string, string>, nodeFlags: string[] = []): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...nodeFlags, fromRoot('dist', 'src', 'main.js')], {
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += String(d)));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`app exited: ${stderr}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health/live`);
      if (res.ok) return child;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`app did not start: ${stderr}`);
}

export async function stopApp(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

/**
 * A session token without a sign-in (production mode has no development login): a session row
 * written with `db` (a superuser or owner connection to the control database) and a token naming
 * it, signed with the app's secret.
 */
export async function mintSession(db: pg.Client, secret: string, userId: string, email: string): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO control.sessions (id, user_id, method, expires_at) VALUES (gen_random_uuid(), $1, 'dev', now() + interval '1 hour') RETURNING id`,
    [userId],
  );
  const { JwtService } = await import('@nestjs/jwt');
  return new JwtService({ secret }).signAsync(
    { sub: userId, email, sid: rows[0].id, amr: 'dev' },
    { issuer: 'tenancy-platform', expiresIn: 3600, algorithm: 'HS256' },
  );
}

export interface BenchServer {
  port: number;
  /** The app's environment for this server (production mode, a fresh JWT secret, the bench baseline URL). */
  env: Record<string, string>;
  secret: string;
  /** A superuser connection to the app's database, connected. */
  db: pg.Client;
  stop(): Promise<void>;
}

/**
 * A throw-away embedded PostgreSQL server with the platform's roles and database, for benches
 * that run two copies of the app side by side (one of them with a BENCH_SKIP_* switch, which
 * needs BENCH_BASELINE_DATABASE_URL: both get it, so they differ in nothing else).
 */
export async function startBenchServer(name: string): Promise<BenchServer> {
  const root = mkdtempSync(join(tmpdir(), `tenancy-${name}-bench-`));
  chmodSync(root, 0o755);
  const superPw = randomBytes(12).toString('hex');
  const ownerPw = randomBytes(12).toString('hex');
  const appPw = randomBytes(12).toString('hex');
  const port = await freePort();
  const cluster = await startEmbeddedCluster({ dataDir: join(root, 'primary'), port, password: superPw, maxConnections: 200 });
  const su = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: superPw, database: 'postgres' });
  await su.connect();
  await ensurePlatformRoles(su, { ownerUser: 'tenancy_owner', ownerPassword: ownerPw, appUser: 'tenancy_app', appPassword: appPw });
  await ensureDatabase(su, 'tenancy', 'tenancy_owner');
  await su.end();
  const secret = randomBytes(32).toString('hex');
  const env = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    DEV_LOGIN_ENABLED: 'false',
    LIFECYCLE_SWEEP_INTERVAL_MS: '0',
    DATABASE_URL: `postgres://tenancy_owner:${ownerPw}@127.0.0.1:${port}/tenancy`,
    DATABASE_APP_PASSWORD: appPw,
    JWT_SECRET: secret,
    PLATFORM_ADMIN_EMAILS: 'admin@bench.test',
    BENCH_BASELINE_DATABASE_URL: `postgres://postgres:${superPw}@127.0.0.1:${port}/tenancy`,
    // Each bench measures one thing: plans (metering, rate limits, concurrency caps, statement
    // timeouts) stay out of the others' numbers; bench:billing and bench:noisy turn them on.
    BENCH_SKIP_BILLING: 'true',
  };
  const db = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: superPw, database: 'tenancy' });
  db.on('error', () => undefined);
  await db.connect();
  return {
    port,
    env,
    secret,
    db,
    stop: async () => {
      await db.end().catch(() => undefined);
      await cluster.stop();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** One app process of a variant under measurement, and how to load it for a number of seconds. */
export interface MeasuredApp<V extends string> {
  variant: V;
  port: number;
  run(durationSeconds: number): Promise<{ requests: { average: number }; latency: { p99: number }; non2xx: number; errors: number }>;
}

/**
 * Measures apps in turns, the order rotating every round, after a warm-up of each; returns each
 * variant's requests per second per round (the mean of its apps in that round). Give every variant
 * two apps, started interleaved (A, B, B, A): two identical apps measured 4% apart by start order
 * (BENCHMARKS.md), and with each variant in both positions that bias cancels.
 */
export async function measureInTurns<V extends string>(
  apps: Array<MeasuredApp<V>>,
  opts: { rounds: number; durationSeconds: number; warmupSeconds: number; unit: string },
  log: (msg: string) => void,
): Promise<Record<V, number[]>> {
  for (const a of apps) await a.run(opts.warmupSeconds);
  const count = new Map<V, number>();
  for (const a of apps) count.set(a.variant, (count.get(a.variant) ?? 0) + 1);
  const perRound = Object.fromEntries([...count.keys()].map((v) => [v, [] as number[]])) as Record<V, number[]>;
  for (let round = 1; round <= opts.rounds; round++) {
    const sums = new Map<V, number>();
    for (let i = 0; i < apps.length; i++) {
      const a = apps[(i + round) % apps.length];
      const r = await a.run(opts.durationSeconds);
      if (r.non2xx || r.errors) throw new Error(`${a.variant} (port ${a.port}): ${r.non2xx} non-2xx, ${r.errors} errors`);
      sums.set(a.variant, (sums.get(a.variant) ?? 0) + r.requests.average / count.get(a.variant)!);
      log(`round ${round} ${a.variant} (port ${a.port}): ${r.requests.average.toFixed(0)} ${opts.unit}, p99 ${r.latency.p99} ms`);
    }
    for (const [v, sum] of sums) perRound[v].push(sum);
  }
  return perRound;
}

/** The median (of an even count: the mean of the middle two). */
export const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
/** User and system CPU seconds of these processes so far (Linux /proc; 0 for one that is gone). */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return ticks / 100;
}
/**
 * Busy CPU seconds of the whole machine so far (/proc/stat: everything but idle and I/O wait).
 * Unlike a sum over PostgreSQL's processes, it keeps what a process that exits mid-turn used
 * (autovacuum workers, backends closed by the pools).
 */
export function machineBusySeconds(): number {
  const [, user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).map(Number);
  return (user + nice + system + irq + softirq + steal) / 100;
}
