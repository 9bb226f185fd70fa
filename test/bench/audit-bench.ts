/**
 * npm run bench:audit — what the tenant audit log costs a write, and how fast a long chain verifies.
 *
 * Starts a throw-away embedded PostgreSQL server and four copies of the real app on it (child
 * processes, production mode), two as shipped (each write also appends a hash-chained audit entry
 * in its transaction) and two with BENCH_SKIP_AUDIT, started interleaved. Each variant takes
 * "POST /orgs/:slug/projects" for a shared tenant of its own; autocannon measures the apps in turns
 * (measureInTurns), and the ratio of the medians is the result (target ≥ 0.85); the median of
 * the rounds' own ratios (each round measures both variants within a minute) is printed too, as
 * the machine's speed drifts from round to round, and so is the CPU time a request costs, in the app
 * and in the rest of the machine (PostgreSQL, mostly; from /proc), which drifts much less. BENCH_AA=1 makes all four apps audited (an A/A
 * check of the method: how far apart identical apps measure). Then BENCH_AUDIT_ENTRIES (1,000,000) entries are
 * appended to one tenant's log by SQL, sealed onto its chain by one audit_seal() call (timed), and
 * GET /audit/verify recomputes the whole chain: entries per second, and the app's RSS before and during (the chain
 * is recomputed by one streaming window query in PostgreSQL; the app only receives the verdict).
 * Options (environment): BENCH_DURATION (5 s), BENCH_CONNECTIONS (16), BENCH_ROUNDS (6), BENCH_AUDIT_ENTRIES,
 * BENCH_AUDIT_WRITE (project: the smallest write there is; task: "POST /orgs/:slug/projects/:id/tasks",
 * a write that reads its project first, into one of 16 projects at random, so that concurrent
 * writes seldom share a project row for their foreign-key checks).
 */
import autocannon from 'autocannon';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { freePort, HttpClient } from '../../libs/testing/index.js';
import { cpuSeconds, machineBusySeconds, measureInTurns, median, mintSession, startApp, startBenchServer, stopApp } from './app-process.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const ENTRIES = Number(process.env.BENCH_AUDIT_ENTRIES ?? 1_000_000);
const WRITE = process.env.BENCH_AUDIT_WRITE ?? 'project';
if (WRITE !== 'project' && WRITE !== 'task') throw new Error(`BENCH_AUDIT_WRITE: project or task, not ${WRITE}`);
const log = (msg: string) => process.stderr.write(`${msg}\n`);
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

async function main(): Promise<void> {
  const server = await startBenchServer('audit');
  const { env, secret, db } = server;
  const apps: ChildProcess[] = [];
  try {
    // Two apps per variant, started interleaved: see measureInTurns.
    const [portA, portB, portB2, portA2] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const baselineEnv = process.env.BENCH_AA ? env : { ...env, BENCH_SKIP_AUDIT: 'true' };
    for (const [port, e] of [[portA, env], [portB, baselineEnv], [portB2, baselineEnv], [portA2, env]] as const) {
      apps.push(await startApp(port, e));
    }

    const userId = async (email: string) =>
      (await db.query<{ id: string }>(`INSERT INTO control.users (id, email) VALUES (gen_random_uuid(), $1) ON CONFLICT ((lower(email))) DO UPDATE SET email = EXCLUDED.email RETURNING id`, [email])).rows[0].id;
    const http = new HttpClient(`http://127.0.0.1:${portA}`);
    const admin = http.as(await mintSession(db, secret, await userId('admin@bench.test'), 'admin@bench.test'));
    const tenants: Record<'with' | 'without', { id: string; slug: string }> = {} as never;
    for (const variant of ['with', 'without'] as const) {
      const res = await admin.post('/tenants', { slug: `bench-audit-${variant}`, name: variant, tier: 'shared', ownerEmail: 'owner@bench.test' });
      if (res.status !== 201) throw new Error(`tenant: ${res.status} ${JSON.stringify(res.body)}`);
      tenants[variant] = { id: res.body.id, slug: res.body.slug };
    }
    const token = await mintSession(db, secret, await userId('owner@bench.test'), 'owner@bench.test');
    // What each variant's load writes to: its tenant's projects, or tasks of one of its projects.
    const target: Record<'with' | 'without', { paths: string[]; body: string }> = {} as never;
    for (const variant of ['with', 'without'] as const) {
      const projects = `/orgs/${tenants[variant].slug}/projects`;
      if (WRITE === 'project') {
        target[variant] = { paths: [projects], body: JSON.stringify({ name: 'benchmark project' }) };
        continue;
      }
      const paths: string[] = [];
      for (let i = 0; i < 16; i++) {
        const res = await http.as(token).post(projects, { name: `benchmark tasks ${i}` });
        if (res.status !== 201) throw new Error(`project: ${res.status} ${JSON.stringify(res.body)}`);
        paths.push(`${projects}/${res.body.id}/tasks`);
      }
      target[variant] = { paths, body: JSON.stringify({ title: 'benchmark task' }) };
    }

    const run = (p: number, variant: 'with' | 'without', duration: number) =>
      autocannon({
        url: `http://127.0.0.1:${p}${target[variant].paths[0]}`,
        method: 'POST',
        connections: CONNECTIONS,
        duration,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: target[variant].body,
        // Tasks: a random project per request. Projects: the plain request, as measured before.
        ...(target[variant].paths.length > 1
          ? { requests: [{ setupRequest: (req: autocannon.Request) => ({ ...req, path: target[variant].paths[Math.floor(Math.random() * target[variant].paths.length)] }) }] }
          : {}),
      });
    // CPU time per request of each turn, from /proc: the measured app's, and the rest of the
    // machine's but this bench's own (autocannon): PostgreSQL (every backend, the sealer's
    // included, and its background processes), the idle apps and the kernel. Throughput on this
    // shared machine drifts from round to round; what a request costs in CPU drifts much less.
    const cpu: Record<'with' | 'without', Array<{ app: number; db: number }>> = { with: [], without: [] };
    const pids = [portA, portB, portB2, portA2].map((_, i) => apps[i].pid!);
    const measured = ([['with', portA], ['without', portB], ['without', portB2], ['with', portA2]] as const).map(([variant, port], i) => ({
      variant,
      port,
      run: async (d: number) => {
        const [app0, machine0, self0] = [cpuSeconds([pids[i]]), machineBusySeconds(), process.cpuUsage()];
        const r = await run(port, variant, d);
        const requests = r.requests.total;
        if (d >= DURATION) {
          const app = cpuSeconds([pids[i]]) - app0;
          const self = process.cpuUsage(self0);
          const rest = machineBusySeconds() - machine0 - app - (self.user + self.system) / 1e6;
          const turn = { app: (app * 1e6) / requests, db: (rest * 1e6) / requests };
          cpu[variant].push(turn);
          log(`  ${variant}: CPU per request: app ${turn.app.toFixed(0)} µs, PostgreSQL and the rest ${turn.db.toFixed(0)} µs`);
        }
        return r;
      },
    }));
    const rps = await measureInTurns(
      measured,
      { rounds: ROUNDS, durationSeconds: DURATION, warmupSeconds: 2, unit: 'writes/s' },
      log,
    );
    const audited = await db.query<{ n: string }>(`SELECT count(*) AS n FROM tenant_data.audit_log WHERE organization_id = $1`, [tenants.with.id]);
    const unaudited = await db.query<{ n: string }>(`SELECT count(*) AS n FROM tenant_data.audit_log WHERE organization_id = $1`, [tenants.without.id]);
    log(`audit entries: ${audited.rows[0].n} with auditing, ${unaudited.rows[0].n} without`);
    if (WRITE === 'task') {
      const spread = await db.query<{ min: string; max: string; n: string }>(
        `SELECT min(c) AS min, max(c) AS max, count(*) AS n FROM (SELECT count(*) AS c FROM tenant_data.tasks WHERE organization_id = $1 GROUP BY project_id) x`,
        [tenants.with.id],
      );
      log(`tasks per project (audited tenant): ${spread.rows[0].min}–${spread.rows[0].max} over ${spread.rows[0].n} projects`);
    }

    // A long chain: entries queued for sealing as the app's writes queue them.
    const seedStart = performance.now();
    for (let done = 0; done < ENTRIES; done += 100_000) {
      const n = Math.min(100_000, ENTRIES - done);
      await db.query('BEGIN');
      await db.query(`SELECT set_config('app.current_org_id', $1, true)`, [tenants.without.id]);
      await db.query(
        `WITH entry AS (
           INSERT INTO tenant_data.audit_log (id, actor_kind, actor_id, action, target_type, target_id, metadata)
           SELECT gen_random_uuid(), 'system', 'bench', 'bench.entry', 'project', i::text, jsonb_build_object('i', i) FROM generate_series(1, $1::int) i
           RETURNING id)
         INSERT INTO tenant_data.audit_pending (id) SELECT id FROM entry`,
        [n],
      );
      await db.query('COMMIT');
      log(`  appended ${done + n} entries`);
    }
    log(`${ENTRIES} entries written in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`);
    const sealStart = performance.now();
    await db.query('BEGIN');
    await db.query(`SELECT set_config('app.current_org_id', $1, true)`, [tenants.without.id]);
    await db.query('SELECT tenant_data.audit_seal($1, $2)', [tenants.without.id, ENTRIES + 1]);
    await db.query('COMMIT');
    const sealMs = performance.now() - sealStart;
    log(`${ENTRIES} entries sealed onto the chain in ${(sealMs / 1000).toFixed(1)} s`);
    const owner = http.as(token);
    const pid = apps[0].pid!;
    const before = rssMb(pid);
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMb(pid))), 50);
    const started = performance.now();
    const verified = await owner.get(`/orgs/${tenants.without.slug}/audit/verify`);
    const ms = performance.now() - started;
    clearInterval(sampler);
    if (verified.status !== 200 || !verified.body.ok) throw new Error(`verify: ${verified.status} ${JSON.stringify(verified.body)}`);
    const entries = verified.body.entries as number;

    const withW = median(rps.with);
    const withoutW = median(rps.without);
    const roundRatios = rps.with.map((w, i) => w / rps.without[i]);
    log(`per-round ratios: ${roundRatios.map((r) => r.toFixed(3)).join(' ')}${process.env.BENCH_AA ? ' (A/A: both variants audited)' : ''}`);
    process.stdout.write(
      [
        '| variant | writes/s (median of rounds) | ratio |',
        '|---|---:|---:|',
        `| POST ${WRITE === 'project' ? '/orgs/:slug/projects' : '/orgs/:slug/projects/:id/tasks'} without auditing (baseline) | ${withoutW.toFixed(0)} | 1.00× |`,
        `| the same, audited (as shipped) | ${withW.toFixed(0)} | ${(withW / withoutW).toFixed(3)}× (target ≥ 0.85) |`,
        `| the same, median of the ${roundRatios.length} rounds' own ratios | | ${median(roundRatios).toFixed(3)}× |`,
        '',
        '| variant | app CPU per request (µs, median of turns) | PostgreSQL and the rest of the machine (µs) |',
        '|---|---:|---:|',
        ...(['without', 'with'] as const).map(
          (v) => `| ${v} auditing | ${median(cpu[v].map((c) => c.app)).toFixed(0)} | ${median(cpu[v].map((c) => c.db)).toFixed(0)} |`,
        ),
        '',
        '| chain | entries | seconds | entries/s | app RSS before → peak |',
        '|---|---:|---:|---:|---:|',
        `| sealing (audit_seal, one call) | ${ENTRIES.toLocaleString('en')} | ${(sealMs / 1000).toFixed(2)} | ${Math.round(ENTRIES / (sealMs / 1000)).toLocaleString('en')} | |`,
        `| verification (GET /orgs/:slug/audit/verify) | ${entries.toLocaleString('en')} | ${(ms / 1000).toFixed(2)} | ${Math.round(entries / (ms / 1000)).toLocaleString('en')} | ${before.toFixed(0)} → ${peak.toFixed(0)} MB |`,
      ].join('\n') + '\n',
    );
  } finally {
    await Promise.all(apps.map(stopApp));
    await server.stop();
  }
}

await main();
