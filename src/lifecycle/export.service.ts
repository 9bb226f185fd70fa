import { Inject, Injectable, Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { quoteIdent, uuidLiteral } from '../../libs/postgres/index.js';
import { DATABASE_RUNTIME, type DatabaseRuntime } from '../tenancy/placements.js';
import { TenantDirectory, type Queryable } from '../tenancy/tenant-directory.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { TenantRoute } from '../tenancy/tenant-route.js';
import { TenancyError } from '../tenancy/tenancy.errors.js';
import {
  CONTENT_TYPES,
  EXPORT_FORMAT_NAME,
  EXPORT_FORMAT_VERSION,
  ExportedTable,
  ExportFormat,
  ExportHeader,
  ExportManifest,
  exportFilename,
  JSON_LAYOUT,
  rowPrefix,
} from './export-format.js';
import { LifecycleError } from './lifecycle.errors.js';
import type { Actor } from './actor.js';
import { recordPlatformEvent } from './platform-audit.js';
import { appliedMigrations, connectToTenant, tenantTables } from './tenant-data.js';

/** Why an export stopped before its manifest: logged by the caller, never with row data. */
export interface ExportFailure {
  tenantId: string;
  format: ExportFormat;
  /** The table being read, if any. */
  table?: string;
  rowsDone: number;
  /**
   * 'aborted': the reader went away (a client hung up); 'stalled': it stopped reading for longer
   * than stallTimeoutMs; 'error': the database or the stream failed.
   */
  reason: 'aborted' | 'stalled' | 'error';
  error?: { code?: string; message: string };
}

export interface ExportOptions {
  format: ExportFormat;
  /** Count every table's rows in the snapshot first (one count(*) each), for a progress bar. */
  countRows?: boolean;
  /** Called as rows go out: rows done in this table and in the whole export. */
  onRows?: (table: string, tableRows: number, totalRows: number) => void;
  onFailure?: (failure: ExportFailure) => void;
  onComplete?: (manifest: ExportManifest) => void;
  /**
   * A reader that takes nothing for this long gets the stream destroyed, so that it does not hold
   * a connection and a snapshot (which holds back vacuum) for ever; 0: wait for ever.
   */
  stallTimeoutMs?: number;
}

export interface TenantExport {
  header: ExportHeader;
  /** Rows per table, counted in the snapshot (only with countRows). */
  totals?: Record<string, number>;
  /** The file's bytes; read it to the end (or destroy it) so the connection is released. */
  stream: Readable;
  /** Bytes handed to the reader so far. */
  bytesSent(): number;
  contentType: string;
  filename: string;
}

/** Settings that make PostgreSQL's JSON rendering the same on every server, whatever its configuration. */
const SESSION_SETTINGS =
  "SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'; SET statement_timeout = 0";

const NEWLINE = 0x0a;
const EMPTY = Buffer.alloc(0);
const FIRST_ROW = Buffer.from(JSON_LAYOUT.firstRow);
const NEXT_ROW = Buffer.from(JSON_LAYOUT.nextRow);

/**
 * One table's rows as ndjson row lines, straight from the server: COPY in CSV mode with a
 * delimiter and a quote character that JSON text never contains raw (it escapes every control
 * character), so each line is the JSON exactly as PostgreSQL rendered it, never quoted or escaped.
 */
export function copyRowsSql(table: ExportedTable, tenantId: string): string {
  const cols = table.columns.map(quoteIdent).join(', ');
  const prefix = rowPrefix(table.name).replaceAll("'", "''");
  return (
    `COPY (SELECT '${prefix}' || row_to_json(r)::text || '}' FROM (SELECT ${cols} FROM ${quoteIdent(table.name)} ` +
    `WHERE organization_id = ${uuidLiteral(tenantId)}) r ORDER BY r.${quoteIdent(table.key)}) ` +
    `TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')`
  );
}

/** Rows in a chunk of row lines: JSON text never holds a raw newline, so each one ends a row. */
function countLines(chunk: Buffer): number {
  let n = 0;
  for (let i = chunk.indexOf(NEWLINE); i !== -1; i = chunk.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

/** ndjson row lines in, the json format's row lines out: the prefix and the closing brace dropped, commas between. */
class JsonRows {
  private carry: Buffer = EMPTY;
  private first = true;

  constructor(private readonly prefixLength: number) {}

  push(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl !== -1; nl = chunk.indexOf(NEWLINE, start)) {
      const line = this.carry.length ? Buffer.concat([this.carry, chunk.subarray(0, nl)]) : chunk.subarray(start, nl);
      this.carry = EMPTY;
      out.push(this.first ? FIRST_ROW : NEXT_ROW, line.subarray(this.prefixLength, line.length - 1));
      this.first = false;
      start = nl + 1;
    }
    if (start < chunk.length) this.carry = Buffer.concat([this.carry, chunk.subarray(start)]);
    return Buffer.concat(out);
  }

  end(): void {
    if (this.carry.length) throw new Error('the last row of a table has no line end');
  }
}

/** How far an export's connection got: shared by its stream and the generator that feeds it. */
interface ExportState {
  /** The connection is closed (or being closed): nothing is left to release. */
  released: boolean;
  /** Destroyed from outside before it failed by itself: its reader went away. */
  aborted: boolean;
  /** It failed by itself (the database or the stream). */
  failed: boolean;
}

class ExportStalled extends Error {
  constructor(ms: number) {
    super(`the reader took nothing for ${ms / 1000} s`);
    this.name = 'ExportStalled';
  }
}

/** Pulls from the generator only as fast as the reader reads; destroying it drops the connection at once. */
class ExportStream extends Readable {
  private pumping = false;
  private stallTimer?: NodeJS.Timeout;
  bytes = 0;

  constructor(
    private readonly source: AsyncGenerator<Buffer>,
    private readonly abandon: () => void,
    private readonly stallTimeoutMs: number,
  ) {
    super();
  }

  override _read(): void {
    clearTimeout(this.stallTimer);
    if (this.pumping) return;
    this.pumping = true;
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const next = await this.source.next();
        if (this.destroyed) return;
        if (next.done) {
          this.push(null);
          return;
        }
        this.bytes += next.value.length;
        if (next.value.length && !this.push(next.value)) break;
      }
      this.pumping = false;
      if (this.stallTimeoutMs > 0) {
        this.stallTimer = setTimeout(() => this.destroy(new ExportStalled(this.stallTimeoutMs)), this.stallTimeoutMs).unref();
      }
    } catch (err) {
      this.destroy(err as Error);
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.stallTimer);
    // The generator may be waiting on the server: cutting the connection ends that wait too.
    this.abandon();
    // Resumes a generator parked at a yield so that it reports the stop; a finished one just refuses.
    this.source.throw(err ?? new Error('the export stream was destroyed')).catch(() => undefined);
    callback(err);
  }
}

function errorSummary(err: unknown): { code?: string; message: string } {
  const e = err as { code?: unknown; message?: unknown };
  return { code: typeof e?.code === 'string' ? e.code : undefined, message: String(e?.message ?? err) };
}

/**
 * Opens a tenant's export: one owner-role connection confined to the tenant (RLS applies), one
 * REPEATABLE READ READ ONLY transaction for every table (a consistent snapshot), and a stream
 * that reads one table after the other with COPY, with backpressure: memory stays flat however
 * large the tenant. Problems before the first byte are thrown; later ones destroy the stream, so
 * the manifest, written last, is missing from a truncated export.
 */
export async function openTenantExport(runtime: DatabaseRuntime, route: TenantRoute, options: ExportOptions): Promise<TenantExport> {
  if (route.status === 'provisioning' || route.status === 'failed') {
    throw new LifecycleError('TENANT_STATE_CONFLICT', `tenant '${route.slug}' is ${route.status}: it has no data to export`);
  }
  const client = await connectToTenant(runtime, route.placement, route.id, 'tenancy-export');
  let header: ExportHeader;
  let tables: ExportedTable[];
  let totals: Record<string, number> | undefined;
  try {
    // Audit entries written a moment ago are sealed onto the tenant's chain first, so the export
    // carries them sealed (migrations/tenant/0003).
    const sealable = await client.query<{ f: string | null }>(`SELECT to_regproc('audit_seal')::text AS f`);
    // (During a move's write freeze sealing waits: the export then carries those entries unsealed.)
    if (sealable.rows[0].f) await client.query('SELECT audit_seal($1, 1000000)', [route.id]).catch(() => undefined);
    await client.query(`${SESSION_SETTINGS}; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`);
    tables = (await tenantTables(client)).map((t) => ({ name: t.name, key: t.key, columns: t.columns.filter((c) => c !== 'organization_id') }));
    const migrations = await appliedMigrations(client);
    const { rows } = await client.query<{ at: Date }>('SELECT now() AS at');
    header = {
      type: 'header',
      format: EXPORT_FORMAT_NAME,
      version: EXPORT_FORMAT_VERSION,
      tenant: { id: route.id, slug: route.slug, name: route.name, tier: route.placement.tier, status: route.status },
      exportedAt: rows[0].at.toISOString(),
      migration: migrations.at(-1) ?? null,
      tables,
    };
    if (options.countRows) {
      totals = {};
      for (const t of tables) {
        const c = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(t.name)} WHERE organization_id = $1`, [route.id]);
        totals[t.name] = Number(c.rows[0].n);
      }
    }
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }

  const state: ExportState = { released: false, aborted: false, failed: false };
  const abandon = () => {
    if (!state.failed) state.aborted = true;
    if (state.released) return;
    state.released = true;
    client.connection.stream.destroy();
  };
  const stream = new ExportStream(produce(client, route.id, header, tables, options, state), abandon, options.stallTimeoutMs ?? 0);
  return {
    header,
    totals,
    stream,
    bytesSent: () => stream.bytes,
    contentType: CONTENT_TYPES[options.format],
    filename: exportFilename(route.slug, new Date(header.exportedAt), options.format),
  };
}

async function* produce(
  client: pg.Client,
  tenantId: string,
  header: ExportHeader,
  tables: ExportedTable[],
  options: ExportOptions,
  state: ExportState,
): AsyncGenerator<Buffer> {
  const json = options.format === 'json';
  const manifest: ExportManifest = { type: 'manifest', tables: {} };
  let current: string | undefined;
  let totalRows = 0;
  try {
    yield Buffer.from(json ? JSON_LAYOUT.open(header) : `${JSON.stringify(header)}\n`);
    for (const [i, table] of tables.entries()) {
      current = table.name;
      if (json) yield Buffer.from(JSON_LAYOUT.tableOpen(table.name, i === 0));
      const hash = createHash('sha256');
      const shaper = json ? new JsonRows(rowPrefix(table.name).length) : undefined;
      let rows = 0;
      const copy = client.query(copyTo(copyRowsSql(table, tenantId)));
      for await (const chunk of copy as AsyncIterable<Buffer>) {
        hash.update(chunk);
        const n = countLines(chunk);
        rows += n;
        totalRows += n;
        yield shaper ? shaper.push(chunk) : chunk;
        options.onRows?.(table.name, rows, totalRows);
      }
      if (shaper) {
        shaper.end();
        yield Buffer.from(JSON_LAYOUT.tableClose);
      }
      manifest.tables[table.name] = { rows, sha256: hash.digest('hex') };
    }
    current = undefined;
    await client.query('COMMIT');
    state.released = true;
    await client.end();
    yield Buffer.from(json ? JSON_LAYOUT.close(manifest) : `${JSON.stringify(manifest)}\n`);
    options.onComplete?.(manifest);
  } catch (err) {
    if (!state.aborted) state.failed = true;
    const reason = err instanceof ExportStalled ? 'stalled' : state.aborted ? 'aborted' : 'error';
    options.onFailure?.({
      tenantId,
      format: options.format,
      table: current,
      rowsDone: totalRows,
      reason,
      error: reason === 'aborted' ? undefined : errorSummary(err),
    });
    throw err;
  }
}

/** How long an HTTP export waits for a client that reads nothing before it gives up. */
export const HTTP_STALL_TIMEOUT_MS = 5 * 60_000;

/** Tenant exports for platform admins: resolves the tenant, records who exported it, logs the outcome. */
@Injectable()
export class ExportService {
  private readonly logger = new Logger(ExportService.name);

  constructor(
    private readonly directory: TenantDirectory,
    private readonly pools: TenantPools,
    @Inject(DATABASE_RUNTIME) private readonly runtime: DatabaseRuntime,
  ) {}

  async open(tenantId: string, format: ExportFormat, actor: Actor): Promise<TenantExport> {
    const route = await this.directory.findTenant(tenantId);
    if (!route) throw new TenancyError('TENANT_NOT_FOUND', `tenant ${tenantId} was not found`, 'id');
    const started = Date.now();
    const exp = await openTenantExport(this.runtime, route, {
      format,
      stallTimeoutMs: HTTP_STALL_TIMEOUT_MS,
      onFailure: (f) => {
        const entry = { ...f, requestId: actor.requestId, ms: Date.now() - started };
        if (f.reason === 'error') this.logger.error(entry, 'tenant export failed; the file has no manifest');
        else this.logger.warn(entry, `tenant export stopped: the reader ${f.reason === 'stalled' ? 'stopped reading' : 'went away'}`);
      },
      onComplete: (m) => this.logger.log({ tenantId, format, tables: m.tables, requestId: actor.requestId, ms: Date.now() - started }, 'tenant export finished'),
    });
    await recordTenantExport(this.pools.control(), actor, exp, format);
    return exp;
  }
}

/** The platform audit entry of an export (data leaving the platform), written before its first byte goes out. */
export async function recordTenantExport(q: Queryable, actor: Actor, exp: TenantExport, format: ExportFormat): Promise<void> {
  try {
    await recordPlatformEvent(q, {
      actorKind: actor.kind,
      actorId: actor.id,
      action: 'tenant.exported',
      tenantId: exp.header.tenant.id,
      targetType: 'tenant',
      targetId: exp.header.tenant.id,
      metadata: { slug: exp.header.tenant.slug, format, exportedAt: exp.header.exportedAt, migration: exp.header.migration },
      requestId: actor.requestId,
    });
  } catch (err) {
    exp.stream.destroy();
    throw err;
  }
}
