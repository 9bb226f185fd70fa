/**
 * npm run bench:sessions — what checking the server-side session costs each request.
 *
 * Starts a throw-away embedded PostgreSQL server and two copies of the real app on it (child
 * processes, production mode): one as shipped (every request's session checked: a cache hit after
 * the first) and one with BENCH_SKIP_SESSION_CHECK (a valid signature is enough). Both serve the
 * tenant list "GET /orgs/:slug/projects?limit=20" of a shared tenant with 20 projects; autocannon
 * measures them in turns (A B, B A, ... so that order favours neither; the idle one costs nothing), and the ratio of the medians
 * is the result. Target: ≥ 0.95. Options (environment): BENCH_DURATION (5 s), BENCH_CONNECTIONS (32),
 * BENCH_ROUNDS (6).
 */
import autocannon from 'autocannon';
import type { ChildProcess } from 'node:child_process';
import { freePort, HttpClient } from '../../libs/testing/index.js';
import { mintSession, startApp, startBenchServer, stopApp } from './app-process.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const log = (msg: string) => process.stderr.write(`${msg}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const server = await startBenchServer('sessions');
  const { env, secret, db } = server;
  const apps: ChildProcess[] = [];
  try {
    const [portA, portB] = [await freePort(), await freePort()];
    apps.push(await startApp(portA, env));
    apps.push(await startApp(portB, { ...env, BENCH_SKIP_SESSION_CHECK: 'true' }));

    const id = async (email: string) =>
      (await db.query<{ id: string }>(`INSERT INTO control.users (id, email) VALUES (gen_random_uuid(), $1) RETURNING id`, [email])).rows[0].id;
    const http = new HttpClient(`http://127.0.0.1:${portA}`);
    const admin = http.as(await mintSession(db, secret, await id('admin@bench.test'), 'admin@bench.test'));
    const created = await admin.post('/tenants', { slug: 'bench-sessions', name: 'Bench', tier: 'shared', ownerEmail: 'owner@bench.test' });
    if (created.status !== 201) throw new Error(`tenant: ${created.status} ${JSON.stringify(created.body)}`);
    const ownerId = (await db.query<{ id: string }>(`SELECT id FROM control.users WHERE email = 'owner@bench.test'`)).rows[0].id;
    const token = await mintSession(db, secret, ownerId, 'owner@bench.test');
    const owner = http.as(token);
    for (let i = 0; i < 20; i++) await owner.post('/orgs/bench-sessions/projects', { name: `project ${i}` });

    const path = '/orgs/bench-sessions/projects?limit=20';
    const rps: Record<'with' | 'without', number[]> = { with: [], without: [] };
    for (const [variant, p] of [['with', portA], ['without', portB]] as const) {
      await autocannon({ url: `http://127.0.0.1:${p}${path}`, connections: CONNECTIONS, duration: 3, headers: { authorization: `Bearer ${token}` } });
      log(`warmed up ${variant}`);
    }
    const variants = [['with', portA], ['without', portB]] as const;
    for (let round = 1; round <= ROUNDS; round++) {
      // A B, then B A: neither variant always runs on a machine the other has just warmed.
      for (const [variant, p] of round % 2 ? variants : [...variants].reverse()) {
        const r = await autocannon({ url: `http://127.0.0.1:${p}${path}`, connections: CONNECTIONS, duration: DURATION, headers: { authorization: `Bearer ${token}` } });
        if (r.non2xx || r.errors) throw new Error(`${variant}: ${r.non2xx} non-2xx, ${r.errors} errors`);
        rps[variant].push(r.requests.average);
        log(`round ${round} ${variant} session check: ${r.requests.average.toFixed(0)} req/s, p99 ${r.latency.p99} ms`);
      }
    }
    const withCheck = median(rps.with);
    const without = median(rps.without);
    process.stdout.write(
      [
        '| variant | req/s (median of rounds) | ratio |',
        '|---|---:|---:|',
        `| without the session check (baseline) | ${without.toFixed(0)} | 1.00× |`,
        `| with the session check (as shipped) | ${withCheck.toFixed(0)} | ${(withCheck / without).toFixed(3)}× (target ≥ 0.95) |`,
      ].join('\n') + '\n',
    );
  } finally {
    await Promise.all(apps.map(stopApp));
    await server.stop();
  }
}

await main();
