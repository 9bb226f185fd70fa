/**
 * npm run bench:noisy — what one tenant flooding the shared database pool does to its neighbour.
 *
 * Starts a throw-away embedded PostgreSQL server and the real app (a child process, test mode for
 * the test-only diagnostics route, DB_POOL_MAX 20). Per tier (shared, then schema) two tenants
 * on the same primary database: a quiet one, whose steady traffic (BENCH_QUIET_RATE requests per
 * second over BENCH_QUIET_CONNECTIONS connections on "GET /orgs/:slug/projects?limit=20") is
 * measured, and a noisy one that floods (BENCH_FLOOD_CONNECTIONS connections, each one request
 * after another on "GET /orgs/:slug/_diagnostics/sleep?ms=BENCH_FLOOD_SLEEP_MS", a query that
 * holds a connection). Three conditions, measured in turns within each round (the order rotates
 * from round to round): the quiet tenant alone; with the flood, the noisy tenant capped by its
 * plan (bulkhead, concurrent_requests = BENCH_FLOOD_CAP); with the flood and no cap (the plan's
 * concurrent_requests set to NULL by SQL for those turns). The result is the quiet tenant's p99
 * with each flood over its p99 alone (medians of the rounds). Target with the cap: ≤ 1.5×.
 * Options (environment): BENCH_DURATION (5 s), BENCH_ROUNDS (4), BENCH_QUIET_RATE (300),
 * BENCH_QUIET_CONNECTIONS (8), BENCH_FLOOD_CONNECTIONS (64), BENCH_FLOOD_SLEEP_MS (100),
 * BENCH_FLOOD_CAP (4).
 */
import autocannon from 'autocannon';
import type { ChildProcess } from 'node:child_process';
import { freePort, HttpClient } from '../../libs/testing/index.js';
import type { Tier } from '../../src/tenancy/tenant-route.js';
import { mintSession, startApp, startBenchServer, stopApp } from './app-process.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const QUIET_RATE = Number(process.env.BENCH_QUIET_RATE ?? 300);
const QUIET_CONNECTIONS = Number(process.env.BENCH_QUIET_CONNECTIONS ?? 8);
const FLOOD_CONNECTIONS = Number(process.env.BENCH_FLOOD_CONNECTIONS ?? 64);
const FLOOD_SLEEP_MS = Number(process.env.BENCH_FLOOD_SLEEP_MS ?? 100);
const FLOOD_CAP = Number(process.env.BENCH_FLOOD_CAP ?? 4);
const POOL = 20;
const log = (msg: string) => process.stderr.write(`${msg}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

type Condition = 'alone' | 'flood, capped' | 'flood, no cap';
const CONDITIONS: Condition[] = ['alone', 'flood, capped', 'flood, no cap'];

interface Sample {
  p50: number;
  p99: number;
  rps: number;
  flood?: { ok: number; busy: number; other: number };
}

/** A load that runs until stopped: autocannon with a callback hands back an instance to stop. */
function startLoad(opts: autocannon.Options): { stop(): Promise<autocannon.Result> } {
  let resolve!: (r: autocannon.Result) => void;
  let reject!: (e: unknown) => void;
  const done = new Promise<autocannon.Result>((res, rej) => ((resolve = res), (reject = rej)));
  const instance = autocannon({ ...opts, duration: 3600 }, (err, result) => (err ? reject(err) : resolve(result)));
  return {
    stop: () => {
      instance.stop();
      return done;
    },
  };
}

async function main(): Promise<void> {
  const server = await startBenchServer('noisy');
  const { env, secret, db } = server;
  let app: ChildProcess | undefined;
  try {
    const port = await freePort();
    app = await startApp(port, { ...env, BENCH_SKIP_BILLING: 'false', NODE_ENV: 'test', TEST_ROUTES_ENABLED: 'true', DB_POOL_MAX: String(POOL) });
    const base = `http://127.0.0.1:${port}`;

    // Plans: the noisy tenant's with a cap, the quiet tenant's without one; neither rate-limited.
    const plan = async (key: string, rank: number, cap: number | null) => {
      await db.query(`INSERT INTO control.plans (key, name, rank) VALUES ($1, $1, $2)`, [key, rank]);
      await db.query(
        `INSERT INTO control.plan_features (plan_key, feature, kind, limit_value, enabled) VALUES
           ($1, 'seats', 'limit', NULL, NULL), ($1, 'projects', 'limit', NULL, NULL), ($1, 'tasks_per_project', 'limit', NULL, NULL),
           ($1, 'api_requests_per_minute', 'limit', NULL, NULL), ($1, 'statement_timeout_ms', 'limit', 5000, NULL),
           ($1, 'concurrent_requests', 'limit', $2, NULL),
           ($1, 'tier_shared', 'flag', NULL, true), ($1, 'tier_schema', 'flag', NULL, true), ($1, 'tier_dedicated', 'flag', NULL, true)`,
        [key, cap],
      );
    };
    await plan('noisy', 5, FLOOD_CAP);
    await plan('quiet', 6, null);
    const setCap = async (cap: number | null) => {
      await db.query(`UPDATE control.plan_features SET limit_value = $1 WHERE plan_key = 'noisy' AND feature = 'concurrent_requests'`, [cap]);
      // NOTIFY reaches the app within milliseconds; give it ample time.
      await new Promise((r) => setTimeout(r, 300));
    };

    const userId = async (email: string) =>
      (await db.query<{ id: string }>(`INSERT INTO control.users (id, email) VALUES (gen_random_uuid(), $1) ON CONFLICT ((lower(email))) DO UPDATE SET email = EXCLUDED.email RETURNING id`, [email])).rows[0].id;
    const admin = new HttpClient(base).as(await mintSession(db, secret, await userId('admin@bench.test'), 'admin@bench.test'));
    const token = await mintSession(db, secret, await userId('owner@bench.test'), 'owner@bench.test');
    const owner = new HttpClient(base).as(token);
    const headers = { authorization: `Bearer ${token}` };

    const table: string[] = [
      `| tier | quiet tenant's traffic | p50 (ms) | p99 (ms) | p99 ÷ alone | noisy tenant's requests: ok / 429 TENANT_BUSY |`,
      '|---|---|---:|---:|---:|---:|',
    ];
    const ratios: string[] = [];
    for (const tier of ['shared', 'schema'] as Tier[]) {
      const slug = { quiet: `quiet-${tier}`, noisy: `noisy-${tier}` };
      for (const [who, p] of [['quiet', 'quiet'], ['noisy', 'noisy']] as const) {
        const res = await admin.post('/tenants', { slug: slug[who], name: who, tier, ownerEmail: 'owner@bench.test', plan: p });
        if (res.status !== 201) throw new Error(`tenant: ${res.status} ${JSON.stringify(res.body)}`);
      }
      for (let i = 0; i < 20; i++) await owner.post(`/orgs/${slug.quiet}/projects`, { name: `project ${i}` });
      const quietUrl = `${base}/orgs/${slug.quiet}/projects?limit=20`;
      const floodUrl = `${base}/orgs/${slug.noisy}/_diagnostics/sleep?ms=${FLOOD_SLEEP_MS}`;
      await autocannon({ url: quietUrl, connections: QUIET_CONNECTIONS, duration: 2, headers });

      const measure = async (condition: Condition): Promise<Sample> => {
        let flood: { stop(): Promise<autocannon.Result> } | undefined;
        if (condition !== 'alone') {
          await setCap(condition === 'flood, capped' ? FLOOD_CAP : null);
          flood = startLoad({ url: floodUrl, connections: FLOOD_CONNECTIONS, headers });
          // Let the flood fill the pool (and the cap's queue) before measuring.
          await new Promise((r) => setTimeout(r, 1500));
        }
        const r = await autocannon({ url: quietUrl, connections: QUIET_CONNECTIONS, overallRate: QUIET_RATE, duration: DURATION, headers });
        const f = await flood?.stop();
        if (r.non2xx || r.errors || r.timeouts) throw new Error(`quiet tenant, ${condition}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`);
        // Waiting requests of the flood drain before the next turn.
        if (flood) await new Promise((r2) => setTimeout(r2, 1500));
        return {
          p50: r.latency.p50,
          p99: r.latency.p99,
          rps: r.requests.average,
          flood: f && { ok: f['2xx'], busy: f['4xx'], other: f['5xx'] + f.errors },
        };
      };

      const samples: Record<Condition, Sample[]> = { alone: [], 'flood, capped': [], 'flood, no cap': [] };
      for (let round = 0; round < ROUNDS; round++) {
        const order = [...CONDITIONS.slice(round % 3), ...CONDITIONS.slice(0, round % 3)];
        for (const condition of order) {
          const s = await measure(condition);
          samples[condition].push(s);
          const f = s.flood ? `; flood ${s.flood.ok} ok, ${s.flood.busy} refused, ${s.flood.other} other` : '';
          log(`${tier} round ${round + 1} ${condition}: quiet p50 ${s.p50} ms, p99 ${s.p99} ms, ${s.rps.toFixed(0)} req/s${f}`);
        }
      }
      await setCap(FLOOD_CAP);
      const alone = median(samples.alone.map((s) => s.p99));
      for (const condition of CONDITIONS) {
        const ss = samples[condition];
        const p99 = median(ss.map((s) => s.p99));
        const floodCell = condition === 'alone' ? '' : `${median(ss.map((s) => s.flood!.ok))} / ${median(ss.map((s) => s.flood!.busy))}`;
        table.push(`| ${tier} | ${condition} | ${median(ss.map((s) => s.p50))} | ${p99} | ${(p99 / alone).toFixed(2)}× | ${floodCell} |`);
      }
      ratios.push(
        `${tier}: quiet p99 with the flood ÷ alone = ${(median(samples['flood, capped'].map((s) => s.p99)) / alone).toFixed(2)}× with the cap (target ≤ 1.5×), ` +
          `${(median(samples['flood, no cap'].map((s) => s.p99)) / alone).toFixed(2)}× without`,
      );
    }
    process.stdout.write(
      [
        `Quiet tenant: ${QUIET_RATE} req/s over ${QUIET_CONNECTIONS} connections; flood: ${FLOOD_CONNECTIONS} connections of ${FLOOD_SLEEP_MS} ms queries, ` +
          `cap ${FLOOD_CAP} of a ${POOL}-connection pool; ${ROUNDS} rounds of ${DURATION} s, medians.`,
        '',
        ...table,
        '',
        ...ratios,
      ].join('\n') + '\n',
    );
  } finally {
    if (app) await stopApp(app);
    await server.stop();
  }
}

await main();
