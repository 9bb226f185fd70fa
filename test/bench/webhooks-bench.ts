/**
 * npm run bench:webhooks — what receiving WorkOS directory events costs, and how long applying them takes.
 *
 * Starts a throw-away embedded PostgreSQL server and the WorkOS stand-in, runs the real app
 * (production mode) as a child process, links BENCH_ORGS tenants to WorkOS organizations and has
 * the stand-in's directories record BENCH_EVENTS directory events (per organization: the directory
 * and a group, users created, added to the group, suspended and deleted, in that order, as an
 * initial sync followed by changes). Then, with BENCH_CONCURRENCY requests in flight:
 *   baseline   the same number of GET /health/live (no body, no database): the floor of a request;
 *   webhooks   every event POSTed, signed, to /webhooks/workos, as WorkOS delivers them:
 *              acknowledgement latency (verify the signature, store, answer) and the time until
 *              every event is applied (processed in the background: memberships, sessions, audit);
 *   replayed   the same deliveries again (WorkOS retries): acknowledged, nothing applied twice.
 * Checks at the end that every event was applied exactly once and the memberships are as expected.
 * Options (environment): BENCH_EVENTS (1000, a multiple of 100), BENCH_ORGS (10), BENCH_CONCURRENCY (16).
 */
import { WorkOS } from '@workos-inc/node';
import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ensureDatabase, ensurePlatformRoles, startEmbeddedCluster } from '../../libs/postgres/index.js';
import { freePort } from '../../libs/testing/index.js';
import { signWorkOSWebhook, startWorkOSStandIn, type StandInEvent, type WorkOSStandIn } from '../../libs/testing/workos-stand-in.js';
import { startApp, stopApp } from './app-process.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1000);
const ORGS = Number(process.env.BENCH_ORGS ?? 10);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const ACK_P99_TARGET_MS = 50;
const PROCESS_TARGET_MS = 10_000;
const API_KEY = 'sk_bench_webhooks';
const CLIENT_ID = 'client_bench_webhooks';
const SECRET = `whsec_${randomBytes(16).toString('hex')}`;

const log = (msg: string) => process.stderr.write(`${msg}\n`);

interface Latencies {
  p50: number;
  p99: number;
  max: number;
  totalMs: number;
  errors: number;
}

/** Each request timed from send to the last byte of the answer, CONCURRENCY at a time. */
async function timed(n: number, send: (i: number) => Promise<Response>): Promise<Latencies> {
  const ms: number[] = [];
  let errors = 0;
  let next = 0;
  const start = performance.now();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const t0 = performance.now();
      const res = await send(i);
      await res.arrayBuffer();
      ms.push(performance.now() - t0);
      if (!res.ok) errors++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const totalMs = performance.now() - start;
  ms.sort((a, b) => a - b);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))];
  return { p50: at(0.5), p99: at(0.99), max: ms[ms.length - 1], totalMs, errors };
}

/** Per organization, 100 events: directory + group (2), 80 users, 10 into the group, 5 suspended, 3 deleted. */
async function recordEvents(standIn: WorkOSStandIn, orgIds: string[]): Promise<StandInEvent[]> {
  const perOrg = EVENTS / orgIds.length;
  const users = Math.round(perOrg * 0.8);
  const grouped = Math.round(perOrg * 0.1);
  const suspended = Math.round(perOrg * 0.05);
  const deleted = perOrg - 2 - users - grouped - suspended;
  for (const [k, orgId] of orgIds.entries()) {
    const { group } = await standIn.createDirectoryGroup(orgId, { name: 'Admins' });
    const ids: string[] = [];
    for (let i = 0; i < users; i++) ids.push((await standIn.createDirectoryUser(orgId, { email: `user${i}@org${k}.bench.test` })).user.id);
    for (let i = 0; i < grouped; i++) await standIn.addUserToGroup(group.id, ids[i]);
    for (let i = 0; i < suspended; i++) await standIn.suspendDirectoryUser(ids[grouped + i]);
    for (let i = 0; i < deleted; i++) await standIn.deleteDirectoryUser(ids[grouped + suspended + i]);
  }
  const events = (await standIn.events()).filter((e) => e.event.startsWith('dsync.'));
  if (events.length !== EVENTS) throw new Error(`recorded ${events.length} directory events, expected ${EVENTS}`);
  return events;
}

async function main(): Promise<void> {
  if (EVENTS % ORGS !== 0 || EVENTS / ORGS < 20) throw new Error('BENCH_EVENTS must be a multiple of BENCH_ORGS, at least 20 per organization');
  const root = mkdtempSync(join(tmpdir(), 'tenancy-webhooks-bench-'));
  chmodSync(root, 0o755);
  const superPw = randomBytes(12).toString('hex');
  const ownerPw = randomBytes(12).toString('hex');
  const appPw = randomBytes(12).toString('hex');
  const pgPort = await freePort();
  log(`starting PostgreSQL on ${pgPort} (data in ${root})`);
  const cluster = await startEmbeddedCluster({ dataDir: join(root, 'primary'), port: pgPort, password: superPw, maxConnections: 100 });
  const standIn = await startWorkOSStandIn({ apiKey: API_KEY, clientId: CLIENT_ID, webhookSecret: SECRET });
  let app: ChildProcess | undefined;
  let db: pg.Client | undefined;
  try {
    const su = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', password: superPw, database: 'postgres' });
    await su.connect();
    await ensurePlatformRoles(su, { ownerUser: 'tenancy_owner', ownerPassword: ownerPw, appUser: 'tenancy_app', appPassword: appPw });
    await ensureDatabase(su, 'tenancy', 'tenancy_owner');
    await su.end();

    const appPort = await freePort();
    app = await startApp(appPort, {
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      DATABASE_URL: `postgres://tenancy_owner:${ownerPw}@127.0.0.1:${pgPort}/tenancy`,
      DATABASE_APP_PASSWORD: appPw,
      JWT_SECRET: randomBytes(32).toString('hex'),
      DEV_LOGIN_ENABLED: 'false',
      WORKOS_API_KEY: API_KEY,
      WORKOS_CLIENT_ID: CLIENT_ID,
      WORKOS_WEBHOOK_SECRET: SECRET,
      WORKOS_API_HOST: `http://127.0.0.1:${standIn.port}`,
    });
    const base = `http://127.0.0.1:${appPort}`;

    // Tenants and their links, written straight into the control plane (not what is measured).
    db = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'tenancy_owner', password: ownerPw, database: 'tenancy' });
    await db.connect();
    const sdk = new WorkOS(API_KEY, standIn.sdkOptions);
    const orgIds: string[] = [];
    for (let k = 0; k < ORGS; k++) {
      const tenantId = randomUUID();
      const domain = `org${k}.bench.test`;
      await db.query(
        `INSERT INTO control.tenants (id, slug, name, status, tier, server_key, database_name, schema_name)
         VALUES ($1, $2, $2, 'active', 'shared', 'primary', 'tenancy', 'tenant_data')`,
        [tenantId, `bench-org-${k}`],
      );
      // No seat limit in the way of what is measured.
      await db.query(`INSERT INTO control.organization_billing (tenant_id, plan_key, status) VALUES ($1, 'enterprise', 'active')`, [tenantId]);
      const org = await sdk.organizations.createOrganization({ name: `bench-org-${k}`, externalId: tenantId, domainData: [{ domain, state: 'verified' as never }] });
      await db.query(`INSERT INTO control.sso_links (tenant_id, workos_organization_id, role_mapping) VALUES ($1, $2, '{"Admins": "admin"}')`, [tenantId, org.id]);
      await db.query('INSERT INTO control.sso_domains (domain, tenant_id, verified) VALUES ($1, $2, true)', [domain, tenantId]);
      orgIds.push(org.id);
    }
    log(`recording ${EVENTS} directory events for ${ORGS} organizations in the stand-in`);
    const events = await recordEvents(standIn, orgIds);
    const bodies = events.map((e) => JSON.stringify({ id: e.id, event: e.event, data: e.data, created_at: e.created_at }));
    const deliver = (i: number) =>
      fetch(`${base}/webhooks/workos`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'workos-signature': signWorkOSWebhook(bodies[i], SECRET) },
        body: bodies[i],
      });

    // Warm-up: connections, JIT, pools (an unknown event is stored and ignored).
    await timed(200, () => fetch(`${base}/health/live`));
    await timed(50, (i) => {
      const body = JSON.stringify({ id: `event_warmup${i}`, event: 'bench.warmup', data: {}, created_at: new Date().toISOString() });
      return fetch(`${base}/webhooks/workos`, { method: 'POST', headers: { 'content-type': 'application/json', 'workos-signature': signWorkOSWebhook(body, SECRET) }, body });
    });

    log(`baseline: ${EVENTS} x GET /health/live, ${CONCURRENCY} in flight`);
    const baseline = await timed(EVENTS, () => fetch(`${base}/health/live`));

    log(`webhooks: ${EVENTS} x POST /webhooks/workos, ${CONCURRENCY} in flight`);
    const started = Date.now();
    const webhooks = await timed(EVENTS, deliver);
    const pendingSql = `SELECT count(*)::int AS n FROM control.workos_events WHERE status = 'pending' AND id LIKE 'event\\_%' AND event LIKE 'dsync.%'`;
    for (;;) {
      const { rows } = await db.query<{ n: number }>(pendingSql);
      if (rows[0].n === 0) break;
      if (Date.now() - started > 120_000) throw new Error(`${rows[0].n} events still pending after 2 minutes`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const span = await db.query<{ ms: number }>(
      `SELECT extract(epoch FROM max(processed_at) - to_timestamp($1 / 1000.0)) * 1000 AS ms FROM control.workos_events WHERE event LIKE 'dsync.%'`,
      [started],
    );
    const processedMs = Number(span.rows[0].ms);

    log(`replayed: the same ${EVENTS} deliveries again`);
    const replayed = await timed(EVENTS, deliver);

    const check = await db.query<{ status: string; n: number; max_attempts: number }>(
      `SELECT status, count(*)::int AS n, max(attempts) AS max_attempts FROM control.workos_events WHERE event LIKE 'dsync.%' GROUP BY status ORDER BY status`,
    );
    const members = await db.query<{ role: string; n: number }>(
      `SELECT role, count(*)::int AS n FROM control.memberships m JOIN control.users u ON u.id = m.user_id WHERE u.email LIKE '%.bench.test' GROUP BY role ORDER BY role`,
    );
    const audits = await db.query<{ n: number; distinct_events: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT metadata->>'eventId')::int AS distinct_events FROM control.platform_audit_log WHERE actor_id = 'workos-directory-sync'`,
    );
    const failed = check.rows.find((r) => r.status === 'failed' || r.status === 'pending');
    if (failed || check.rows.some((r) => r.max_attempts !== 1)) throw new Error(`not every event was applied exactly once: ${JSON.stringify(check.rows)}`);
    if (audits.rows[0].n !== audits.rows[0].distinct_events) throw new Error(`an event was audited twice: ${JSON.stringify(audits.rows)}`);
    log(`events: ${check.rows.map((r) => `${r.n} ${r.status}`).join(', ')}; memberships: ${members.rows.map((r) => `${r.n} ${r.role}`).join(', ')}; ${audits.rows[0].n} audit entries`);
    report(baseline, webhooks, replayed, processedMs);
  } finally {
    await db?.end();
    if (app) await stopApp(app);
    await standIn.stop();
    await cluster.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

function report(baseline: Latencies, webhooks: Latencies, replayed: Latencies, processedMs: number): void {
  const f = (ms: number) => `${ms.toFixed(1)} ms`;
  const row = (name: string, l: Latencies) =>
    `| ${name} | ${f(l.p50)} | ${f(l.p99)} | ${(l.p50 / baseline.p50).toFixed(2)}× / ${(l.p99 / baseline.p99).toFixed(2)}× | ${Math.round((EVENTS / l.totalMs) * 1000)} | ${l.errors} |`;
  const lines = [
    `${EVENTS.toLocaleString('en')} directory events for ${ORGS} organization${ORGS === 1 ? '' : 's'}, ${CONCURRENCY} requests in flight`,
    '',
    '| requests | p50 | p99 | ratio to baseline (p50 / p99) | req/s | errors |',
    '|---|---:|---:|---:|---:|---:|',
    row('baseline: GET /health/live', baseline),
    row(`webhooks: POST /webhooks/workos${webhooks.p99 <= ACK_P99_TARGET_MS ? ' (p99 target < 50 ms: met)' : ' (p99 target < 50 ms: MISSED)'}`, webhooks),
    row('replayed deliveries (already stored)', replayed),
    '',
    `All ${EVENTS.toLocaleString('en')} applied ${(processedMs / 1000).toFixed(2)} s after the first delivery was sent` +
      ` (target < 10 s: ${processedMs < PROCESS_TARGET_MS ? 'met' : 'MISSED'}); every event applied exactly once.`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
