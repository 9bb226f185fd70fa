import type { TenantStatus, Tier } from '../tenancy/tenant-route.js';

/**
 * The tenant export file format, shared by the writer (export.service.ts) and the verifier
 * (export-verify.ts). Version 1:
 *
 * ndjson: one JSON object per line, each ending in "\n":
 *   {"type":"header",...}                       the ExportHeader
 *   {"table":"<name>","row":{...}}              one per row, table by table (parents first), rows in key order
 *   {"type":"manifest","tables":{...}}          the ExportManifest; absent = the export is truncated
 *
 * json: the same content as one document, one row per line:
 *   {"header":{...},
 *   "tables":{
 *   "<name>":[
 *   {...},
 *   {...}
 *   ],
 *   ...
 *   },
 *   "manifest":{...}}
 *
 * A table's sha256 is over the exact bytes of its ndjson row lines, each with its "\n", in file
 * order; in the json format, a row line is rebuilt as ROW_PREFIX + <the row's line, without its
 * trailing comma> + "}\n". Both formats of the same snapshot carry the same manifest.
 */
export const EXPORT_FORMATS = ['ndjson', 'json'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export const EXPORT_FORMAT_NAME = 'tenant-export';
export const EXPORT_FORMAT_VERSION = 1;

export const CONTENT_TYPES: Record<ExportFormat, string> = {
  ndjson: 'application/x-ndjson',
  json: 'application/json',
};

export interface ExportedTable {
  name: string;
  /** The key column: rows come in its order. */
  key: string;
  /** The columns of every row object, in their order (by name); organization_id is left out (it is header.tenant.id). */
  columns: string[];
}

export interface ExportHeader {
  type: 'header';
  format: typeof EXPORT_FORMAT_NAME;
  version: typeof EXPORT_FORMAT_VERSION;
  tenant: { id: string; slug: string; name: string; tier: Tier; status: TenantStatus };
  /** When the snapshot's transaction began (ISO 8601, UTC). */
  exportedAt: string;
  /** The last tenant migration applied to the tenant's placement: the shape of the rows. */
  migration: string | null;
  /** Parents before children: importing in this order never breaks a foreign key. */
  tables: ExportedTable[];
}

export interface TableDigest {
  rows: number;
  /** Lowercase hex SHA-256 of the table's row lines (see above). */
  sha256: string;
}

export interface ExportManifest {
  type: 'manifest';
  tables: Record<string, TableDigest>;
}

/** How every ndjson row line of a table begins (table names are plain identifiers: nothing to escape). */
export function rowPrefix(table: string): string {
  return `{"table":"${table}","row":`;
}

export const ROW_SUFFIX = '}\n';

/** The json format's fixed pieces, one structural element per line (see above). */
export const JSON_LAYOUT = {
  open: (header: ExportHeader) => `{"header":${JSON.stringify(header)},\n"tables":{`,
  tableOpen: (name: string, first: boolean) => `${first ? '' : ','}\n"${name}":[`,
  firstRow: '\n',
  nextRow: ',\n',
  tableClose: '\n]',
  close: (manifest: ExportManifest) => `\n},\n"manifest":${JSON.stringify(manifest)}}\n`,
};

/** acme-20260131T123456Z.ndjson */
export function exportFilename(slug: string, at: Date, format: ExportFormat): string {
  const stamp = at.toISOString().slice(0, 19).replaceAll('-', '').replaceAll(':', '');
  return `${slug}-${stamp}Z.${format}`;
}
