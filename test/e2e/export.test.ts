import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { fromRoot } from '../../config/paths.js';
import { loadSqlMigrations } from '../../libs/postgres/index.js';
import { withSuperuser } from '../../libs/testing/index.js';
import { openTenantExport, type ExportFailure } from '../../src/lifecycle/export.service.js';
import { connectToTenant } from '../../src/lifecycle/tenant-data.js';
import { TenantDirectory } from '../../src/tenancy/tenant-directory.service.js';
import type { TenantRoute, Tier } from '../../src/tenancy/tenant-route.js';
import { cliEnv, runCli, tableRows } from '../support/cli-runner.js';
import { createTenant, seedProjects, TenantFixture } from '../support/factories.js';
import { PLATFORM_ADMIN, startTestApp, TestApp } from '../support/test-app.js';

/** The same content for every tier: fixed ids (not inserted in key order), awkward text, NULLs, microseconds. */
const P = (n: number) => `018f0000-0000-7000-8000-00000000000${n}`;
const T = (n: number) => `018f0000-0000-7000-9000-00000000000${n}`;
const PROJECTS = [
  { id: P(3), name: 'Launch "Q3" \\ plan', description: 'line one\nline two\ttabbed', created_at: '2024-02-29 12:34:56.123456+00', updated_at: '2024-03-01 00:00:00+00' },
  { id: P(1), name: 'Café 日本 🎉', description: null, created_at: '2023-12-31 23:59:59.999999+00', updated_at: '2024-01-01 00:00:00.5+00' },
  { id: P(2), name: 'ctrl \u0001 and \u2028 sep, "quoted"', description: '', created_at: '2024-06-01 08:00:00+00', updated_at: '2024-06-01 08:00:00+00' },
];
const TASKS = [
  { id: T(3), project_id: P(1), title: '\n{"type":"manifest","tables":{}}', status: 'done', created_at: '2024-01-02 03:04:05+00', updated_at: '2024-01-02 03:04:05+00' },
  { id: T(1), project_id: P(3), title: '{"table":"projects","row":{}}', status: 'todo', created_at: '2024-03-02 00:00:00+00', updated_at: '2024-03-02 00:00:00+00' },
  { id: T(2), project_id: P(3), title: 'tab\there, back\\slash', status: 'doing', created_at: '2024-03-03 00:00:00.000001+00', updated_at: '2024-03-03 00:00:00.000001+00' },
];
/** What row_to_json renders in UTC: timestamps as ISO 8601 with microseconds kept. */
const iso = (ts: string) => {
  const [date, time] = ts.replace('+00', '').split(' ');
  return `${date}T${time}+00:00`;
};
const EXPECTED = {
  projects: [...PROJECTS]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((p) => ({ created_at: iso(p.created_at), description: p.description, id: p.id, name: p.name, updated_at: iso(p.updated_at) })),
  tasks: [...TASKS]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((x) => ({ created_at: iso(x.created_at), id: x.id, project_id: x.project_id, status: x.status, title: x.title, updated_at: iso(x.updated_at) })),
};
/**
 * Every tenant above also gets a project created and deleted through the API: its content stays
 * the fixed one, and its audit log (tenant data, exported too) gets one entry per write. Audit
 * entries differ per tenant (ids, times, hashes), so tiers are compared on the data tables.
 */
const AUDITED_WRITES = ['project.created', 'project.deleted'];
const DATA_TABLES = ['projects', 'tasks'];
const AUDIT_COLUMNS = ['action', 'actor_id', 'actor_kind', 'created_at', 'id', 'ip', 'metadata', 'request_id', 'target_id', 'target_type', 'user_agent'];
const CHAIN_COLUMNS = ['entry_id', 'hash', 'prev_hash', 'seq'];
const AUDIT_TABLES = ['audit_chain', 'audit_log'];
const BIG_ROWS = 100_000;
const MARKER = 'secret-marker';

interface ParsedExport {
  header: Record<string, any>;
  rows: Record<string, Array<Record<string, unknown>>>;
  /** Row lines of each table, exactly as received (without their newline). */
  lines: Record<string, string[]>;
  manifest: Record<string, any>;
  /** Counted and hashed here, independently of the code under test. */
  recomputed: Record<string, { rows: number; sha256: string }>;
}

function parseNdjson(text: string): ParsedExport {
  expect(text.endsWith('\n')).toBe(true);
  const all = text.slice(0, -1).split('\n');
  const header = JSON.parse(all[0]);
  const manifest = JSON.parse(all[all.length - 1]);
  expect(header.type).toBe('header');
  expect(manifest.type).toBe('manifest');
  const rows: ParsedExport['rows'] = {};
  const lines: ParsedExport['lines'] = {};
  const hashes = new Map<string, ReturnType<typeof createHash>>();
  for (const line of all.slice(1, -1)) {
    const parsed = JSON.parse(line) as { table: string; row: Record<string, unknown> };
    expect(Object.keys(parsed)).toEqual(['table', 'row']);
    (rows[parsed.table] ??= []).push(parsed.row);
    (lines[parsed.table] ??= []).push(line);
    if (!hashes.has(parsed.table)) hashes.set(parsed.table, createHash('sha256'));
    hashes.get(parsed.table)!.update(`${line}\n`, 'utf8');
  }
  const recomputed: ParsedExport['recomputed'] = {};
  for (const t of header.tables as Array<{ name: string }>) {
    recomputed[t.name] = { rows: rows[t.name]?.length ?? 0, sha256: (hashes.get(t.name) ?? createHash('sha256')).digest('hex') };
  }
  return { header, rows, lines, manifest, recomputed };
}

/** The data tables of a per-table record (rows, lines, manifest entries), without the audit log and its chain. */
function dataTables<V>(byTable: Record<string, V>): Record<string, V> {
  return Object.fromEntries(Object.entries(byTable).filter(([name]) => !AUDIT_TABLES.includes(name)));
}

/**
 * The exported audit log: one entry per write, in key order, and its chain: numbered from 1 in
 * key order, one place per entry, chained (each prev_hash is the hash before it), times in UTC
 * whatever the server's time zone.
 */
function expectAuditLog(tables: Record<string, Array<Record<string, any>>>, actions: string[]): void {
  const rows = tables.audit_log;
  expect(rows).toHaveLength(actions.length);
  const ids = rows.map((r) => r.id as string);
  expect(ids).toEqual([...ids].sort());
  const chain = tables.audit_chain;
  expect(chain.map((c) => c.seq)).toEqual(actions.map((_, i) => i + 1));
  const byId = new Map(rows.map((r) => [r.id as string, r]));
  expect(chain.map((c) => byId.get(c.entry_id)?.action)).toEqual(actions);
  rows.forEach((r) => {
    expect(Object.keys(r)).toEqual(AUDIT_COLUMNS);
    expect(r).toMatchObject({ actor_kind: 'user', created_at: expect.stringMatching(/\+00:00$/) });
  });
  chain.forEach((c, i) => {
    expect(Object.keys(c)).toEqual(CHAIN_COLUMNS);
    expect(c.hash).toMatch(/^\\x[0-9a-f]{64}$/);
    expect(c.prev_hash).toBe(i === 0 ? '\\x' : chain[i - 1].hash);
  });
}

let t: TestApp;
let adminToken: string;
let ownerToken: string;
let workdir: string;
let env: Record<string, string>;
const tenants = {} as Record<Tier, TenantFixture>;
let intruder: TenantFixture;
let big: TenantFixture;
let lastMigration: string;

async function routeOf(id: string): Promise<TenantRoute> {
  return (await t.app.get(TenantDirectory).findTenant(id))!;
}

async function asTenantOwner<R>(id: string, fn: (c: pg.Client) => Promise<R>): Promise<R> {
  const c = await connectToTenant(t.runtime, (await routeOf(id)).placement, id, 'export-test-seed');
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** The fixed content, by SQL (no audit entries), then a project created and deleted through the API (two). */
async function seedFixed(tenant: TenantFixture): Promise<void> {
  await asTenantOwner(tenant.id, async (c) => {
    for (const p of PROJECTS) {
      await c.query('INSERT INTO projects (id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)', [
        p.id,
        p.name,
        p.description,
        p.created_at,
        p.updated_at,
      ]);
    }
    for (const x of TASKS) {
      await c.query('INSERT INTO tasks (id, project_id, title, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)', [
        x.id,
        x.project_id,
        x.title,
        x.status,
        x.created_at,
        x.updated_at,
      ]);
    }
  });
  const created = await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name: 'short-lived' });
  if (created.status !== 201) throw new Error(`project not created: ${created.status} ${JSON.stringify(created.body)}`);
  const deleted = await tenant.owner.delete(`/orgs/${tenant.slug}/projects/${created.body.id}`);
  if (deleted.status !== 204) throw new Error(`project not deleted: ${deleted.status} ${JSON.stringify(deleted.body)}`);
}

/** Verifies the tenant's chain through the API, which first seals entries written a moment ago: exports then see them sealed. */
async function expectChain(tenant: TenantFixture, entries: number): Promise<void> {
  const res = await tenant.owner.get(`/orgs/${tenant.slug}/audit/verify`);
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ ok: true, entries, head: { seq: entries } });
}

function download(path: string, token = adminToken, init: RequestInit = {}): Promise<Response> {
  return fetch(t.http.baseUrl + path, { ...init, headers: { authorization: `Bearer ${token}` } });
}

async function exportText(id: string, format = 'ndjson'): Promise<{ res: Response; text: string }> {
  const res = await download(`/tenants/${id}/export?format=${format}`);
  return { res, text: await res.text() };
}

async function setStatus(id: string, status: string): Promise<void> {
  await t.pools().control().query(
    `UPDATE control.tenants SET status = $2,
            deletion_requested_at = CASE WHEN $2 = 'pending_deletion' THEN now() END,
            purge_after = CASE WHEN $2 = 'pending_deletion' THEN now() + interval '30 days' END
      WHERE id = $1`,
    [id, status],
  );
}

async function exportBackends(): Promise<Array<{ state: string }>> {
  return withSuperuser(t.harness, t.harness.primaryPort, 'postgres', async (c) =>
    (await c.query(`SELECT state FROM pg_stat_activity WHERE application_name = 'tenancy-export' AND datname = $1`, [t.database])).rows,
  );
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  t = await startTestApp();
  adminToken = (await t.http.post('/auth/dev/login', { email: PLATFORM_ADMIN })).body.accessToken;
  lastMigration = loadSqlMigrations(fromRoot('migrations', 'tenant')).at(-1)!.name;
  for (const tier of ['shared', 'schema', 'dedicated'] as const) {
    tenants[tier] = await createTenant(t, { tier });
    await seedFixed(tenants[tier]);
  }
  ownerToken = (await t.http.post('/auth/dev/login', { email: tenants.shared.ownerEmail })).body.accessToken;
  // Servers configured differently must not change the bytes: the export fixes its own session settings.
  const dedicated = await routeOf(tenants.dedicated.id);
  await withSuperuser(t.harness, t.harness.secondaryPort, 'postgres', (c) => c.query(`ALTER DATABASE ${dedicated.placement.database} SET TimeZone = 'Asia/Tokyo'`));
  await withSuperuser(t.harness, t.harness.primaryPort, 'postgres', (c) => c.query(`ALTER DATABASE ${t.database} SET TimeZone = 'America/New_York'`));
  // Another tenant in the same shared schema, with rows of its own.
  intruder = await createTenant(t, { tier: 'shared', slug: `intruder-${randomUUID().slice(0, 8)}` });
  await seedProjects(intruder, 3, 1);
  for (const tier of ['shared', 'schema', 'dedicated'] as const) await expectChain(tenants[tier], AUDITED_WRITES.length);
  await expectChain(intruder, 6);
  big = await createTenant(t, { tier: 'shared' });
  await asTenantOwner(big.id, (c) =>
    c.query(
      `INSERT INTO projects (id, name, description) SELECT gen_random_uuid(), '${MARKER} ' || g, repeat('x', 100) FROM generate_series(1, ${BIG_ROWS}) g`,
    ),
  );
  workdir = mkdtempSync(join(tmpdir(), 'tenancy-export-'));
  env = cliEnv(t.harness, t.database, t.config.auth.jwtSecret!);
});

afterAll(async () => {
  if (workdir) rmSync(workdir, { recursive: true, force: true });
  await t?.close();
});

describe('GET /tenants/:id/export', () => {
  const manifests = new Map<Tier, unknown>();
  const lines = new Map<Tier, Record<string, string[]>>();

  it.each(['shared', 'schema', 'dedicated'] as const)('streams a %s tenant: header, rows parents first in key order, a manifest that holds', async (tier) => {
    const tenant = tenants[tier];
    const { res, text } = await exportText(tenant.id);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    expect(res.headers.get('content-disposition')).toMatch(new RegExp(`^attachment; filename="${tenant.slug}-\\d{8}T\\d{6}Z\\.ndjson"$`));
    expect(res.headers.get('transfer-encoding')).toBe('chunked');

    const parsed = parseNdjson(text);
    expect(parsed.header).toMatchObject({
      type: 'header',
      format: 'tenant-export',
      version: 1,
      tenant: { id: tenant.id, slug: tenant.slug, name: `Tenant ${tenant.slug}`, tier, status: 'active' },
      migration: lastMigration,
      tables: [
        { name: 'audit_chain', key: 'seq', columns: CHAIN_COLUMNS },
        { name: 'audit_log', key: 'id', columns: AUDIT_COLUMNS },
        { name: 'projects', key: 'id', columns: ['created_at', 'description', 'id', 'name', 'updated_at'] },
        { name: 'tasks', key: 'id', columns: ['created_at', 'id', 'project_id', 'status', 'title', 'updated_at'] },
      ],
    });
    expect(Date.now() - Date.parse(parsed.header.exportedAt)).toBeLessThan(60_000);
    // Parents first: every projects line comes before the first tasks line (the audit log references neither).
    const order = text.split('\n').slice(1, -2).map((l) => JSON.parse(l).table);
    expect(order).toEqual(
      [...Array(AUDITED_WRITES.length).fill('audit_chain'), ...Array(AUDITED_WRITES.length).fill('audit_log'), ...Array(3).fill('projects'), ...Array(3).fill('tasks')],
    );
    expect(dataTables(parsed.rows)).toEqual(EXPECTED);
    expectAuditLog(parsed.rows, AUDITED_WRITES);
    expect(parsed.manifest).toEqual({ type: 'manifest', tables: parsed.recomputed });
    expect(parsed.recomputed.projects.rows).toBe(3);
    expect(parsed.recomputed.audit_log.rows).toBe(AUDITED_WRITES.length);
    expect(parsed.recomputed.audit_chain.rows).toBe(AUDITED_WRITES.length);
    manifests.set(tier, parsed.manifest);
    lines.set(tier, parsed.lines);
  });

  it('gives byte-identical rows and the same manifest on every tier', () => {
    expect(manifests.size).toBe(3);
    // The same content, the same bytes: the data tables. Each tenant's audit log is its own (checked above).
    const dataManifest = (tier: Tier) => {
      const m = manifests.get(tier) as { type: string; tables: Record<string, unknown> };
      return { ...m, tables: dataTables(m.tables) };
    };
    expect(Object.keys(dataManifest('shared').tables)).toEqual(DATA_TABLES);
    expect(dataManifest('schema')).toEqual(dataManifest('shared'));
    expect(dataManifest('dedicated')).toEqual(dataManifest('shared'));
    expect(Object.keys(dataTables(lines.get('shared')!))).toEqual(DATA_TABLES);
    expect(dataTables(lines.get('schema')!)).toEqual(dataTables(lines.get('shared')!));
    expect(dataTables(lines.get('dedicated')!)).toEqual(dataTables(lines.get('shared')!));
  });

  it("never shows another tenant's rows of the same shared schema", async () => {
    const mineText = (await exportText(tenants.shared.id)).text;
    const mine = parseNdjson(mineText);
    const theirs = parseNdjson((await exportText(intruder.id)).text);
    expect(dataTables(mine.rows)).toEqual(EXPECTED);
    expectAuditLog(mine.rows, AUDITED_WRITES);
    expect(JSON.stringify(mine.rows)).not.toContain(intruder.slug);
    expect(theirs.manifest.tables.projects.rows).toBe(3);
    expect(theirs.manifest.tables.tasks.rows).toBe(3);
    // Seeded through the API: one audit entry per project and per task, in the order written.
    expect(theirs.manifest.tables.audit_log.rows).toBe(6);
    expect(theirs.manifest.tables.audit_chain.rows).toBe(6);
    expectAuditLog(theirs.rows, Array(3).fill(['project.created', 'task.created']).flat());
    expect(theirs.manifest).toEqual({ type: 'manifest', tables: theirs.recomputed });
    for (const p of theirs.rows.projects) expect(p.name).toContain(intruder.slug);
    const mineIds = new Set([...mine.rows.projects, ...mine.rows.tasks, ...mine.rows.audit_log].map((r) => r.id));
    for (const r of [...theirs.rows.projects, ...theirs.rows.tasks, ...theirs.rows.audit_log]) expect(mineIds.has(r.id)).toBe(false);
    // Not even as the target of one of my audit entries.
    for (const r of [...theirs.rows.projects, ...theirs.rows.tasks]) expect(mineText).not.toContain(r.id as string);
  });

  it('streams the json format as one document with the same content and manifest', async () => {
    const ndjson = parseNdjson((await exportText(tenants.schema.id)).text);
    const { res, text } = await exportText(tenants.schema.id, 'json');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('content-disposition')).toMatch(new RegExp(`^attachment; filename="${tenants.schema.slug}-\\d{8}T\\d{6}Z\\.json"$`));
    const doc = JSON.parse(text);
    expect(Object.keys(doc)).toEqual(['header', 'tables', 'manifest']);
    expect({ ...doc.header, exportedAt: 'x' }).toEqual({ ...ndjson.header, exportedAt: 'x' });
    expect(doc.tables).toEqual(ndjson.rows);
    expect(doc.manifest).toEqual(ndjson.manifest);
    // One row per line, in the very bytes of the ndjson rows.
    const rowLines = text.split('\n').filter((l) => l.startsWith('{"') && !l.startsWith('{"header"'));
    expect(ndjson.lines.audit_log).toHaveLength(AUDITED_WRITES.length);
    expect(rowLines.map((l) => l.replace(/,$/, ''))).toEqual(
      [...ndjson.lines.audit_chain, ...ndjson.lines.audit_log, ...ndjson.lines.projects, ...ndjson.lines.tasks].map((l) => l.slice(l.indexOf('"row":') + 6, -1)),
    );
  });

  it('exports an empty table and an empty tenant with an empty-input hash', async () => {
    const empty = await createTenant(t, { tier: 'schema' });
    const parsed = parseNdjson((await exportText(empty.id)).text);
    const none = createHash('sha256').digest('hex');
    expect(parsed.manifest.tables).toEqual({
      audit_chain: { rows: 0, sha256: none },
      audit_log: { rows: 0, sha256: none },
      projects: { rows: 0, sha256: none },
      tasks: { rows: 0, sha256: none },
    });
    const doc = JSON.parse((await exportText(empty.id, 'json')).text);
    expect(doc.tables).toEqual({ audit_chain: [], audit_log: [], projects: [], tasks: [] });
    expect(doc.manifest).toEqual(parsed.manifest);
  });

  it('exports a suspended tenant and one scheduled for deletion; refuses one still provisioning', async () => {
    const id = tenants.schema.id;
    try {
      for (const status of ['suspended', 'pending_deletion']) {
        await setStatus(id, status);
        const { res, text } = await exportText(id);
        expect(res.status).toBe(200);
        const parsed = parseNdjson(text);
        expect(parsed.header.tenant.status).toBe(status);
        expect(dataTables(parsed.rows)).toEqual(EXPECTED);
        expectAuditLog(parsed.rows, AUDITED_WRITES);
      }
      await setStatus(id, 'provisioning');
      const refused = await download(`/tenants/${id}/export`);
      expect(refused.status).toBe(409);
      expect(await refused.json()).toMatchObject({ code: 'TENANT_STATE_CONFLICT' });
    } finally {
      await setStatus(id, 'active');
    }
  });

  it('answers 404, 400 (naming the field), 403 and 401 with the usual error body', async () => {
    const unknown = await download(`/tenants/${randomUUID()}/export`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ code: 'TENANT_NOT_FOUND', field: 'id' });

    const format = await download(`/tenants/${tenants.shared.id}/export?format=xml`);
    expect(format.status).toBe(400);
    expect(await format.json()).toMatchObject({ code: 'VALIDATION_FAILED', field: 'format', message: 'format must be one of: ndjson, json' });

    const badId = await download('/tenants/not-a-uuid/export');
    expect(badId.status).toBe(400);
    expect(await badId.json()).toMatchObject({ code: 'VALIDATION_FAILED', field: 'id' });

    const owner = await download(`/tenants/${tenants.shared.id}/export`, ownerToken);
    expect(owner.status).toBe(403);
    expect(await owner.json()).toMatchObject({ code: 'PLATFORM_ADMIN_REQUIRED' });

    const anonymous = await fetch(`${t.http.baseUrl}/tenants/${tenants.shared.id}/export`);
    expect(anonymous.status).toBe(401);
  });

  it('is documented in the OpenAPI document: both formats, the format parameter, the error statuses', async () => {
    const doc = (await t.http.get('/docs-json')).body;
    const op = doc.paths['/tenants/{id}/export'].get;
    expect(Object.keys(op.responses['200'].content)).toEqual(['application/x-ndjson', 'application/json']);
    expect(op.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`).sort()).toEqual(['path:id', 'query:format']);
    expect(op.parameters.find((p: { name: string }) => p.name === 'format').schema.enum).toEqual(['ndjson', 'json']);
    expect(Object.keys(op.responses).sort()).toEqual(['200', '400', '403', '404', '409', '503']);
    expect(op.security).toEqual([{ bearer: [] }]);
  });

  it('records every export in the platform audit log, with the admin who asked', async () => {
    const adminId = (await t.pools().control().query(`SELECT id FROM control.users WHERE email = $1`, [PLATFORM_ADMIN]))[0].id;
    const entries = await t.pools().control().query(
      `SELECT actor_kind, actor_id, metadata FROM control.platform_audit_log WHERE tenant_id = $1 AND action = 'tenant.exported' ORDER BY at`,
      [tenants.dedicated.id],
    );
    expect(entries.length).toBeGreaterThanOrEqual(1);
    expect(entries[0]).toMatchObject({ actor_kind: 'user', actor_id: adminId, metadata: { format: 'ndjson', migration: lastMigration } });
  });

  it('holds back while the reader does not read (backpressure), and a reader hanging up releases the connection', async () => {
    const aborter = new AbortController();
    try {
      const res = await download(`/tenants/${big.id}/export`, adminToken, { signal: aborter.signal });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      const first = await reader.read();
      expect(first.done).toBe(false);
      // The export (about 30 MB) cannot all be sitting in buffers: the server is still on it, waiting for us.
      await new Promise((r) => setTimeout(r, 500));
      expect(await exportBackends()).toHaveLength(1);
    } finally {
      aborter.abort();
    }
    await waitFor('the export connection to close', async () => (await exportBackends()).length === 0);
  });
});

describe('an export failing mid-stream', () => {
  async function killExportBackends(): Promise<void> {
    await withSuperuser(t.harness, t.harness.primaryPort, 'postgres', (c) =>
      c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tenancy-export' AND datname = $1`, [t.database]),
    );
  }

  it('cuts the HTTP response before the manifest when the database fails', async () => {
    const aborter = new AbortController();
    let text = '';
    let cut: unknown;
    try {
      const res = await download(`/tenants/${big.id}/export`, adminToken, { signal: aborter.signal });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      text += decoder.decode((await reader.read()).value, { stream: true });
      await killExportBackends();
      try {
        for (let r = await reader.read(); !r.done; r = await reader.read()) text += decoder.decode(r.value, { stream: true });
      } catch (err) {
        cut = err;
      }
    } finally {
      aborter.abort();
    }
    expect(cut).toBeDefined();
    expect(text.startsWith('{"type":"header"')).toBe(true);
    expect(text).not.toContain('"type":"manifest"');
    await waitFor('the export connection to close', async () => (await exportBackends()).length === 0);
  });

  it('gives up on a reader that stops reading, and releases the connection', async () => {
    const failures: ExportFailure[] = [];
    const exp = await openTenantExport(t.runtime, await routeOf(big.id), { format: 'json', stallTimeoutMs: 300, onFailure: (f) => failures.push(f) });
    const closed = new Promise<Error | undefined>((resolve) => {
      exp.stream.once('error', resolve);
      exp.stream.once('close', () => resolve(undefined));
    });
    let stop: Error | undefined;
    try {
      const first = await new Promise<Buffer>((resolve) => exp.stream.once('data', (chunk: Buffer) => (exp.stream.pause(), resolve(chunk))));
      expect(String(first)).toContain('"header"');
      stop = await Promise.race([closed, new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000))]);
    } finally {
      exp.stream.destroy();
    }
    expect(stop?.message).toBe('the reader took nothing for 0.3 s');
    // Reported once the generator has unwound (it closes the table's COPY stream first).
    await waitFor('the failure to be reported', async () => failures.length > 0, 2_000);
    expect(failures).toEqual([expect.objectContaining({ tenantId: big.id, format: 'json', reason: 'stalled', error: { message: 'the reader took nothing for 0.3 s' } })]);
    await waitFor('the export connection to close', async () => (await exportBackends()).length === 0);
  });

  it('destroys the stream before the manifest and reports the failure without row data', async () => {
    const failures: ExportFailure[] = [];
    const exp = await openTenantExport(t.runtime, await routeOf(big.id), { format: 'ndjson', onFailure: (f) => failures.push(f) });
    let received = '';
    let stop: Error | undefined;
    let killed = false;
    try {
      for await (const chunk of exp.stream) {
        received += String(chunk);
        if (!killed && received.includes(MARKER)) {
          killed = true;
          await killExportBackends();
        }
      }
    } catch (err) {
      stop = err as Error;
    }
    expect(killed).toBe(true);
    expect(stop).toBeDefined();
    expect(exp.stream.destroyed).toBe(true);
    expect(received).not.toContain('"type":"manifest"');
    expect(received.split('\n').length - 2).toBeLessThan(BIG_ROWS);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ tenantId: big.id, format: 'ndjson', table: 'projects', reason: 'error' });
    expect(failures[0].rowsDone).toBeGreaterThan(0);
    expect(failures[0].error?.message).toBeTruthy();
    expect(JSON.stringify(failures[0])).not.toContain(MARKER);
    await waitFor('the export connection to close', async () => (await exportBackends()).length === 0);
  });
});

describe('tenants export and verify-export (CLI)', () => {
  const cli = (...args: string[]) => runCli({ cwd: workdir, env, timeoutMs: 60_000 }, ...args);

  it('exports to a file with a progress bar, and verify-export confirms it', async () => {
    const out = join(workdir, 'shared.ndjson');
    const run = await cli('tenants', 'export', tenants.shared.slug, '--out', out);
    // The data's 6 rows, and the audit log's entries with their places on the chain.
    const total = 6 + 2 * AUDITED_WRITES.length;
    expect(run.stderr).toMatch(new RegExp(`export \\[[^\\]]*\\] 100% \\| ${total}/${total} rows \\| ETA`));
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('');
    const text = readFileSync(out, 'utf8');
    const parsed = parseNdjson(text);
    expect(dataTables(parsed.rows)).toEqual(EXPECTED);
    expectAuditLog(parsed.rows, AUDITED_WRITES);
    expect(parsed.manifest).toEqual({ type: 'manifest', tables: parsed.recomputed });
    const viaHttp = parseNdjson((await exportText(tenants.shared.id)).text);
    expect(parsed.lines).toEqual(viaHttp.lines);

    const verified = await cli('tenants', 'verify-export', out);
    expect(verified.code).toBe(0);
    const [head, ...rows] = tableRows(verified.stdout);
    expect(head).toEqual(['table', 'rows', 'sha256', 'manifest']);
    expect(rows).toEqual([
      ['audit_chain', String(AUDITED_WRITES.length), parsed.recomputed.audit_chain.sha256, 'ok'],
      ['audit_log', String(AUDITED_WRITES.length), parsed.recomputed.audit_log.sha256, 'ok'],
      ['projects', '3', parsed.recomputed.projects.sha256, 'ok'],
      ['tasks', '3', parsed.recomputed.tasks.sha256, 'ok'],
    ]);
    expect(verified.stdout).toContain(`${total} rows in 4 tables match the manifest`);

    const audit = await t.pools().control().query(
      `SELECT actor_kind FROM control.platform_audit_log WHERE tenant_id = $1 AND action = 'tenant.exported' AND actor_kind = 'operator'`,
      [tenants.shared.id],
    );
    expect(audit.length).toBe(1);
  });

  it('exports json to stdout, which verify-export confirms too', async () => {
    const run = await cli('tenants', 'export', tenants.dedicated.slug, '--format', 'json');
    expect(run.code).toBe(0);
    const doc = JSON.parse(run.stdout);
    expect(dataTables(doc.tables)).toEqual(EXPECTED);
    expectAuditLog(doc.tables, AUDITED_WRITES);
    const file = join(workdir, 'dedicated.json');
    writeFileSync(file, run.stdout);
    const verified = await cli('tenants', 'verify-export', file);
    expect(verified.code).toBe(0);
    expect(tableRows(verified.stdout).slice(1).map((r) => r[3])).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(tableRows(verified.stdout).slice(1).map((r) => r[2])).toEqual([
      doc.manifest.tables.audit_chain.sha256,
      doc.manifest.tables.audit_log.sha256,
      doc.manifest.tables.projects.sha256,
      doc.manifest.tables.tasks.sha256,
    ]);
  });

  it('verify-export names the table that was changed, and detects a cut-short file (exit 1)', async () => {
    const good = readFileSync(join(workdir, 'shared.ndjson'), 'utf8');
    const tampered = join(workdir, 'tampered.ndjson');
    writeFileSync(tampered, good.replace('tab\\there', 'tab\\thEre'));
    expect(readFileSync(tampered, 'utf8')).not.toBe(good);
    const changed = await cli('tenants', 'verify-export', tampered);
    expect(changed.code).toBe(1);
    expect(changed.stderr).toContain("table 'tasks'");
    expect(changed.stderr).not.toContain("table 'projects'");
    expect(changed.stderr).not.toContain("table 'audit_log'");
    expect(changed.stderr).not.toContain("table 'audit_chain'");

    const dropped = join(workdir, 'dropped.ndjson');
    writeFileSync(dropped, good.split('\n').filter((l) => !l.includes(P(2))).join('\n'));
    const missing = await cli('tenants', 'verify-export', dropped);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("table 'projects': the file has 2 rows");

    const truncated = join(workdir, 'truncated.ndjson');
    writeFileSync(truncated, good.slice(0, good.lastIndexOf('{"type":"manifest"')));
    const cut = await cli('tenants', 'verify-export', truncated);
    expect(cut.code).toBe(1);
    expect(cut.stderr).toContain('no manifest');

    const jsonGood = readFileSync(join(workdir, 'dedicated.json'), 'utf8');
    const jsonTampered = join(workdir, 'tampered.json');
    writeFileSync(jsonTampered, jsonGood.replace('Café', 'Cafe'));
    const jsonChanged = await cli('tenants', 'verify-export', jsonTampered);
    expect(jsonChanged.code).toBe(1);
    expect(jsonChanged.stderr).toContain("table 'projects'");
    expect(jsonChanged.stderr).not.toContain("table 'tasks'");
    expect(jsonChanged.stderr).not.toContain("table 'audit_log'");
  });

  it('refuses an unknown tenant (exit 1) and a bad format (exit 2)', async () => {
    const unknown = await cli('tenants', 'export', 'no-such-tenant', '--out', join(workdir, 'none.ndjson'));
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('TENANT_NOT_FOUND');
    const format = await cli('tenants', 'export', tenants.shared.slug, '--format', 'xml');
    expect(format.code).toBe(2);
    expect(format.stderr).toContain('ndjson, json');
    const noFile = await cli('tenants', 'verify-export', join(workdir, 'nowhere.ndjson'));
    expect(noFile.code).toBe(1);
    expect(noFile.stderr).toContain('cannot read');
  });
});
