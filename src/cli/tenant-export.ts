import type cliProgress from 'cli-progress';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { operatorActor } from '../lifecycle/actor.js';
import type { ExportFormat } from '../lifecycle/export-format.js';
import { verifyExport, type VerifiedTable } from '../lifecycle/export-verify.js';
import { openTenantExport, recordTenantExport } from '../lifecycle/export.service.js';
import { TENANT_COLUMNS, TenantRow, toRoute } from '../tenancy/routing-table.service.js';
import { CONTROL_SCHEMA, type DatabaseRuntime, withOwner } from '../tenancy/placements.js';
import type { TenantRoute } from '../tenancy/tenant-route.js';
import { tenantNotFound } from '../tenancy/tenancy.errors.js';
import { CliFailure, explainMissingControlPlane } from './cli.errors.js';
import { note, printTable, progressBar, result } from './output.js';
import { loadCliConfig, withServers } from './session.js';

// Loaded only by `tenants export` and `tenants verify-export`.

export interface ExportCliOptions {
  format: ExportFormat;
  out?: string;
}

/** Rows done of the rows counted in the snapshot, with speed and ETA, on stderr. */
class ExportProgressBar {
  private bar?: cliProgress.SingleBar;

  start(total: number): void {
    if (total === 0) return;
    this.bar = progressBar('export [{bar}] {percentage}% | {value}/{total} rows | ETA {eta_formatted} | {table}', { etaBuffer: 200 });
    this.bar.start(total, 0, { table: '' });
  }

  readonly onRows = (table: string, _tableRows: number, totalRows: number): void => {
    this.bar?.update(totalRows, { table });
  };

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

function formatBytes(n: number): string {
  return n >= 1_048_576 ? `${(n / 1_048_576).toFixed(1)} MB` : `${(n / 1024).toFixed(1)} kB`;
}

async function findBySlug(runtime: DatabaseRuntime, slug: string): Promise<TenantRoute> {
  const row = await withOwner(runtime.primary, runtime.primary.database, async (c) => {
    const { rows } = await c.query<TenantRow>(`SELECT ${TENANT_COLUMNS} FROM ${CONTROL_SCHEMA}.tenants WHERE slug = $1`, [slug]);
    return rows[0];
  }).catch(explainMissingControlPlane);
  if (!row) throw tenantNotFound(slug);
  return toRoute(row);
}

export async function exportTenant(slug: string, opts: ExportCliOptions): Promise<void> {
  const config = loadCliConfig();
  await withServers(config, async (runtime) => {
    const route = await findBySlug(runtime, slug);
    const progress = new ExportProgressBar();
    const started = Date.now();
    const exp = await openTenantExport(runtime, route, { format: opts.format, countRows: true, onRows: progress.onRows });
    await withOwner(runtime.primary, runtime.primary.database, (c) =>
      recordTenantExport({ query: async <T>(sql: string, params?: unknown[]) => (await c.query(sql, params)).rows as T }, operatorActor(), exp, opts.format),
    );
    const total = Object.values(exp.totals ?? {}).reduce((a, n) => a + n, 0);
    note(`exporting tenant '${route.slug}' (${route.placement.tier} on ${route.placement.serverKey}, ${route.status}): ${total} rows in ${exp.header.tables.length} tables`);
    // A file at --out is always complete: written aside, renamed at the end, removed on failure.
    const partial = opts.out ? join(dirname(opts.out), `.${basename(opts.out)}.partial`) : undefined;
    progress.start(total);
    try {
      if (partial) await pipeline(exp.stream, createWriteStream(partial, { flags: 'wx' }));
      else await pipeline(exp.stream, process.stdout, { end: false });
      if (partial) await rename(partial, opts.out!);
    } catch (err) {
      if (partial) await rm(partial, { force: true });
      throw err;
    } finally {
      progress.stop();
    }
    const seconds = (Date.now() - started) / 1000;
    note(
      `exported ${total} rows (${formatBytes(exp.bytesSent())}) of tenant '${route.slug}' in ${seconds.toFixed(1)} s` +
        `${opts.out ? ` to ${opts.out}` : ''}; check it with: npm run cli -- tenants verify-export ${opts.out ?? '<file>'}`,
    );
  });
}

function manifestCell(t: VerifiedTable): string {
  if (t.ok) return 'ok';
  if (!t.expected) return 'not listed';
  return t.expected.rows === t.rows ? 'sha256 differs' : `${t.expected.rows} rows expected`;
}

export async function verifyExportFile(file: string): Promise<void> {
  let verified;
  try {
    verified = await verifyExport(createReadStream(file));
  } catch (err) {
    throw new CliFailure(`cannot read ${file}: ${(err as Error).message}`);
  }
  if (verified.tables.length) {
    printTable(
      ['table', 'rows', 'sha256', 'manifest'],
      verified.tables.map((t) => [t.name, t.rows, t.sha256, manifestCell(t)]),
    );
  }
  if (verified.problems.length) {
    throw new CliFailure(`${file} does not match its manifest:\n${verified.problems.map((p) => `  ${p}`).join('\n')}`);
  }
  const rows = verified.tables.reduce((a, t) => a + t.rows, 0);
  const h = verified.header!;
  result(
    `${file}: ${verified.format} export of tenant '${h.tenant.slug}' (${h.tenant.id}) taken ${h.exportedAt}: ` +
      `${rows} rows in ${verified.tables.length} tables match the manifest`,
  );
}
