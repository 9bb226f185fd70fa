import { Command, InvalidArgumentError, Option } from 'commander';
import { latestMigration, MIGRATED_STATUSES } from '../tenancy/migration-rollout.js';
import { CONTROL_SCHEMA, SHARED_SCHEMA, withOwner } from '../tenancy/placements.js';
import { explainMissingControlPlane } from './cli.errors.js';
import { formatTime, note, printTable } from './output.js';
import { loadCliConfig, withServers } from './session.js';

const MAX_LIST = 10_000;
const ERROR_WIDTH = 120;

function parseLimit(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_LIST) throw new InvalidArgumentError(`must be a whole number from 1 to ${MAX_LIST}`);
  return n;
}

interface StatusRow {
  slug: string | null;
  tier: string;
  server_key: string;
  database_name: string;
  schema_name: string;
  version: string | null;
  status: string;
  error: string | null;
  attempted_at: Date;
}

interface VersionRow {
  version: string | null;
  placements: number;
  ok: number;
  failed: number;
  pending: number;
}

const short = (text: string | null) => (!text ? '' : text.length > ERROR_WIDTH ? `${text.slice(0, ERROR_WIDTH - 1)}…` : text);

export function migrationsCommand(): Command {
  const migrations = new Command('migrations').description('What the tenant migration rollouts recorded of every placement');

  migrations
    .command('status')
    .description('Table of placements: tenant, tier, server, database/schema, version, status, error, attempted; failures first')
    .option('--failed', 'only placements whose last attempt failed')
    .addOption(new Option('--limit <n>', `at most this many rows (1-${MAX_LIST})`).default(50).argParser(parseLimit))
    .addHelpText(
      'after',
      `
Read-only: reads control.placement_migrations, written by \`migrate\` and by app start-ups that
migrate; no placement is contacted, so a placement changed by hand shows only after
\`migrate --recheck\`. Order: failed, then pending (a rollout stopped before it), then the oldest
versions. A second table counts placements by version; notes on stderr say how many placements
no rollout has recorded yet and which version this code needs.

Examples:
  $ npm run cli -- migrations status
  $ npm run cli -- migrations status --failed
  $ npm run cli -- migrations status --limit 500`,
    )
    .action(async (opts: { failed?: boolean; limit: number }) => {
      const config = loadCliConfig();
      const { rows, total, versions, unrecorded, latest } = await withServers(config, (runtime) =>
        withOwner(runtime.primary, runtime.primary.database, async (c) => {
          const where = opts.failed ? `WHERE pm.status = 'failed'` : '';
          const page = await c.query<StatusRow>(
            `SELECT t.slug, pm.tier, pm.server_key, pm.database_name, pm.schema_name, pm.version, pm.status, pm.error, pm.attempted_at
               FROM ${CONTROL_SCHEMA}.placement_migrations pm
               LEFT JOIN ${CONTROL_SCHEMA}.tenants t ON t.id = pm.tenant_id
               ${where}
              ORDER BY CASE pm.status WHEN 'failed' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END,
                       pm.version COLLATE "C" NULLS FIRST, t.slug NULLS LAST, pm.server_key, pm.database_name, pm.schema_name
              LIMIT $1`,
            [opts.limit],
          );
          const count = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${CONTROL_SCHEMA}.placement_migrations pm ${where}`);
          const byVersion = await c.query<VersionRow>(
            `SELECT version, count(*)::int AS placements,
                    count(*) FILTER (WHERE status = 'ok')::int AS ok,
                    count(*) FILTER (WHERE status = 'failed')::int AS failed,
                    count(*) FILTER (WHERE status = 'pending')::int AS pending
               FROM ${CONTROL_SCHEMA}.placement_migrations
              GROUP BY version ORDER BY version COLLATE "C" DESC NULLS LAST`,
          );
          // Placements that are kept migrated but that no rollout has recorded (e.g. provisioned since).
          const missing = await c.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM (
                SELECT server_key, database_name, schema_name FROM ${CONTROL_SCHEMA}.tenants WHERE tier <> 'shared' AND status = ANY ($1)
                UNION SELECT $2, $3, $4
              ) p
              WHERE NOT EXISTS (SELECT 1 FROM ${CONTROL_SCHEMA}.placement_migrations pm
                                 WHERE (pm.server_key, pm.database_name, pm.schema_name) = (p.server_key, p.database_name, p.schema_name))`,
            [MIGRATED_STATUSES, runtime.primary.key, runtime.primary.database, SHARED_SCHEMA],
          );
          return { rows: page.rows, total: count.rows[0].n, versions: byVersion.rows, unrecorded: missing.rows[0].n, latest: latestMigration(runtime) };
        }).catch(explainMissingControlPlane),
      );
      printTable(
        ['tenant', 'tier', 'server', 'database/schema', 'version', 'status', 'error', 'attempted'],
        rows.map((r) => [
          r.slug ?? (r.tier === 'shared' ? '(shared tier)' : '(gone)'),
          r.tier,
          r.server_key,
          `${r.database_name}/${r.schema_name}`,
          r.version ?? '',
          r.status,
          short(r.error),
          formatTime(r.attempted_at),
        ]),
      );
      printTable(
        ['version', 'placements', 'ok', 'failed', 'pending'],
        versions.map((v) => [v.version ?? '(none)', v.placements, v.ok, v.failed, v.pending]),
      );
      const what = opts.failed ? 'failed placement' : 'recorded placement';
      note(`${rows.length} of ${total} ${what}${total === 1 ? '' : 's'}${rows.length < total ? ' (raise --limit to see more)' : ''}`);
      note(`this code's newest tenant migration: ${latest ?? 'none'}`);
      if (unrecorded) note(`${unrecorded} placement${unrecorded === 1 ? ' has' : 's have'} no record yet: \`npm run migrate\` records them`);
    });

  return migrations;
}
