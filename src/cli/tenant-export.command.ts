import { Command, InvalidArgumentError, Option } from 'commander';
import { EXPORT_FORMATS } from '../lifecycle/export-format.js';
import { SLUG_PATTERN, SLUG_RULE } from '../tenancy/tenant-route.js';
import type { ExportCliOptions } from './tenant-export.js';

function parseSlug(value: string): string {
  if (!SLUG_PATTERN.test(value)) throw new InvalidArgumentError(SLUG_RULE);
  return value;
}

/** tenants export | verify-export */
export function addExportCommands(tenants: Command): void {
  tenants
    .command('export')
    .description("Stream all of a tenant's data (one consistent snapshot, every tier alike) to a file or stdout, with a manifest")
    .argument('<slug>', 'the tenant (active, suspended or scheduled for deletion)', parseSlug)
    .addOption(new Option('--format <format>', 'ndjson: one line per row; json: one document').choices(EXPORT_FORMATS).default('ndjson'))
    .option('--out <file>', 'write here (complete or not at all: written aside and renamed at the end); default: stdout')
    .addHelpText(
      'after',
      `
The same export as GET /tenants/:id/export: a header, every row of every tenant table (parents
first, rows in key order, as PostgreSQL renders them in JSON), then a manifest with each table's
row count and SHA-256, which verify-export checks. Rows are counted first, then a progress bar
(rows done / total, ETA) goes to stderr. Read-only: nothing is migrated or changed; the platform
audit log records the OS user as the operator (tenant.exported).

Examples:
  $ npm run cli -- tenants export acme --out acme.ndjson
  $ npm run cli -- tenants export acme --format json > acme.json
  $ npm run cli -- tenants export acme | gzip > acme.ndjson.gz`,
    )
    .action(async (slug: string, opts: ExportCliOptions) => {
      const { exportTenant } = await import('./tenant-export.js');
      await exportTenant(slug, opts);
    });

  tenants
    .command('verify-export')
    .description("Check an export file (either format) against its manifest: every table's row count and SHA-256")
    .argument('<file>', 'the export file')
    .addHelpText(
      'after',
      `
Reads the file once, line by line; needs no database. Exit code 0 when every table matches the
manifest, 1 when the file was changed or cut short (the tables that differ are named).

Examples:
  $ npm run cli -- tenants verify-export acme.ndjson`,
    )
    .action(async (file: string) => {
      const { verifyExportFile } = await import('./tenant-export.js');
      await verifyExportFile(file);
    });
}
