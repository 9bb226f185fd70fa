/**
 * npm run bench:billing — what the plan's per-request work costs the tenant list endpoint: usage
 * metering, the rate limits (two throttler counters per request), the statement timeout in the
 * transaction prologue and the concurrency cap's bookkeeping.
 *
 * Starts a throw-away embedded PostgreSQL server and four copies of the real app on it (child
 * processes, production mode), started in the order with, without, without, with: two as
 * shipped and two with BENCH_SKIP_BILLING (no metering, no rate limits, no plan limits at all).
 * Two of each, because two identical apps measured 4% apart when one of each was started (the
 * first-started one slower): with both variants in both positions, that bias cancels. Both serve "GET /orgs/:slug/projects?limit=20" of the
 * same shared tenant with 20 projects, on a plan whose limits are all set but never reached (a
 * rate of 10^9 a minute, a 5 s statement timeout, a cap of 2 × BENCH_CONNECTIONS at once), so
 * every check runs and none refuses. autocannon measures the four in turns (the order rotating
 * every round); a variant's figure in a round is the mean of its two apps, and the ratio of the
 * medians over the rounds is the result. BENCH_AA=1 makes all four apps as shipped (an A/A check
 * of the method itself). Target: ≥ 0.95. Options (environment): BENCH_DURATION
 * (5 s), BENCH_CONNECTIONS (32), BENCH_ROUNDS (6), BENCH_LIMITS (rate,timeout,cap: which of the
 * plan's per-request limits are set; leave one out to see what it costs).
 */
import autocannon from 'autocannon';
import type { ChildProcess } from 'node:child_process';
import { freePort, HttpClient } from '../../libs/testing/index.js';
import { measureInTurns, median, mintSession, startApp, startBenchServer, stopApp } from './app-process.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const LIMITS = new Set((process.env.BENCH_LIMITS ?? 'rate,timeout,cap').split(',').map((s) => s.trim()));
const log = (msg: string) => process.stderr.write(`${msg}\n`);

async function main(): Promise<void> {
  const server = await startBenchServer('billing');
  const { env, secret, db } = server;
  const apps: ChildProcess[] = [];
  try {
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    const [portA, portB1, portB2, portA2] = ports;
    // BENCH_AA=1: every app as shipped, to see how far apart identical apps measure.
    const shippedEnv = { ...env, BENCH_SKIP_BILLING: 'false' };
    const baselineEnv = process.env.BENCH_AA ? shippedEnv : { ...env, BENCH_SKIP_BILLING: 'true' };
    for (const [port, e] of [[portA, shippedEnv], [portB1, baselineEnv], [portB2, baselineEnv], [portA2, shippedEnv]] as const) apps.push(await startApp(port, e));

    // Every per-request limit set, none reached (the apps have created the control schema by now).
    await db.query(`INSERT INTO control.plans (key, name, rank) VALUES ('bench', 'Bench', 5)`);
    await db.query(
      `INSERT INTO control.plan_features (plan_key, feature, kind, limit_value, enabled) VALUES
         ('bench', 'seats', 'limit', NULL, NULL), ('bench', 'projects', 'limit', 1000, NULL), ('bench', 'tasks_per_project', 'limit', 1000, NULL),
         ('bench', 'api_requests_per_minute', 'limit', $1, NULL), ('bench', 'statement_timeout_ms', 'limit', $2, NULL),
         ('bench', 'concurrent_requests', 'limit', $3, NULL),
         ('bench', 'tier_shared', 'flag', NULL, true), ('bench', 'tier_schema', 'flag', NULL, true), ('bench', 'tier_dedicated', 'flag', NULL, true)`,
      [LIMITS.has('rate') ? 1_000_000_000 : null, LIMITS.has('timeout') ? 5000 : null, LIMITS.has('cap') ? CONNECTIONS * 2 : null],
    );

    const userId = async (email: string) =>
      (await db.query<{ id: string }>(`INSERT INTO control.users (id, email) VALUES (gen_random_uuid(), $1) ON CONFLICT ((lower(email))) DO UPDATE SET email = EXCLUDED.email RETURNING id`, [email])).rows[0].id;
    const http = new HttpClient(`http://127.0.0.1:${portA}`);
    const admin = http.as(await mintSession(db, secret, await userId('admin@bench.test'), 'admin@bench.test'));
    const created = await admin.post('/tenants', { slug: 'bench-billing', name: 'Bench', tier: 'shared', ownerEmail: 'owner@bench.test', plan: 'bench' });
    if (created.status !== 201) throw new Error(`tenant: ${created.status} ${JSON.stringify(created.body)}`);
    const token = await mintSession(db, secret, await userId('owner@bench.test'), 'owner@bench.test');
    const owner = http.as(token);
    for (let i = 0; i < 20; i++) {
      const res = await owner.post('/orgs/bench-billing/projects', { name: `project ${i}` });
      if (res.status !== 201) throw new Error(`project: ${res.status} ${JSON.stringify(res.body)}`);
    }
    // The shipped app applies the plan (rate-limit headers on every response); the other does not.
    const probe = await owner.get('/orgs/bench-billing/projects?limit=20');
    if (probe.headers.get('x-ratelimit-limit') !== (LIMITS.has('rate') ? String(Math.ceil(1e9 * 0.5)) : null)) throw new Error('the shipped app does not apply the bench plan');
    const skipped = await new HttpClient(`http://127.0.0.1:${portB1}`, token).get('/orgs/bench-billing/projects?limit=20');
    if (!process.env.BENCH_AA && (skipped.status !== 200 || skipped.headers.get('x-ratelimit-limit') !== null)) throw new Error('the baseline app applies plan limits');

    const path = '/orgs/bench-billing/projects?limit=20';
    const run = (p: number, duration: number) =>
      autocannon({ url: `http://127.0.0.1:${p}${path}`, connections: CONNECTIONS, duration, headers: { authorization: `Bearer ${token}` } });
    const rps = await measureInTurns(
      ([['with', portA], ['without', portB1], ['without', portB2], ['with', portA2]] as const).map(([variant, port]) => ({ variant, port, run: (d: number) => run(port, d) })),
      { rounds: ROUNDS, durationSeconds: DURATION, warmupSeconds: 3, unit: 'req/s' },
      log,
    );
    const withBilling = median(rps.with);
    const without = median(rps.without);
    process.stdout.write(
      [
        '| variant | req/s (median of rounds) | ratio |',
        '|---|---:|---:|',
        `| without metering, rate limits or plan limits (BENCH_SKIP_BILLING, baseline) | ${without.toFixed(0)} | 1.00× |`,
        `| with them (as shipped; plan limits set: ${[...LIMITS].join(', ')}) | ${withBilling.toFixed(0)} | ${(withBilling / without).toFixed(3)}× (target ≥ 0.95) |`,
      ].join('\n') + '\n',
    );
  } finally {
    await Promise.all(apps.map(stopApp));
    await server.stop();
  }
}

await main();
