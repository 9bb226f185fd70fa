import { Command, InvalidArgumentError, Option } from 'commander';
import { ValidationFailed } from '../http/domain-error.js';
import { withOwner } from '../tenancy/placements.js';
import { isDay, resolveRange, TOP_BY, topTenants, type TopBy } from '../usage/usage-queries.js';
import { explainMissingControlPlane, UsageError } from './cli.errors.js';
import { note, printTable } from './output.js';
import { loadCliConfig, withServers } from './session.js';

function parseDay(value: string): string {
  if (!isDay(value)) throw new InvalidArgumentError('must be a calendar date written YYYY-MM-DD');
  return value;
}

function parseLimit(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 1000) throw new InvalidArgumentError('must be a whole number from 1 to 1000');
  return n;
}

export function usageCommand(): Command {
  const usage = new Command('usage').description('Usage per tenant and UTC day, as the app instances flushed it to control.usage_daily');

  usage
    .command('top')
    .description('The tenants that used the most over a range of UTC days, noisiest first')
    .addOption(new Option('--by <what>', 'requests, or db_time (milliseconds holding a tenant connection)').choices(TOP_BY).default('requests'))
    .option('--from <day>', 'first UTC day, YYYY-MM-DD (default: 29 days before --to)', parseDay)
    .option('--to <day>', 'last UTC day, YYYY-MM-DD (default: today)', parseDay)
    .addOption(new Option('--limit <n>', 'at most this many tenants (1-1000)').default(10).argParser(parseLimit))
    .addHelpText(
      'after',
      `
Read-only: nothing is migrated. Each app instance adds its counts every USAGE_FLUSH_INTERVAL_MS,
so the last few seconds of traffic may be missing.

Examples:
  $ npm run cli -- usage top
  $ npm run cli -- usage top --by db_time --from 2026-01-01 --to 2026-01-31 --limit 20`,
    )
    .action(async (opts: { by: TopBy; from?: string; to?: string; limit: number }) => {
      let range: { from: string; to: string };
      try {
        range = resolveRange(opts);
      } catch (err) {
        if (err instanceof ValidationFailed) throw new UsageError(err.message);
        throw err;
      }
      const config = loadCliConfig();
      const top = await withServers(config, (runtime) =>
        withOwner(runtime.primary, runtime.primary.database, (c) =>
          topTenants(async (sql, params) => (await c.query(sql, params)).rows, opts.by, range.from, range.to, opts.limit),
        ).catch(explainMissingControlPlane),
      );
      printTable(
        ['slug', 'id', 'tier', 'requests', 'errors', 'writes', 'db time ms'],
        top.map((t) => [t.slug, t.tenantId, t.tier, t.requests, t.errors, t.writes, Math.round(t.dbTimeMs)]),
      );
      note(`${top.length} tenant${top.length === 1 ? '' : 's'} by ${opts.by}, ${range.from} to ${range.to} (UTC)`);
    });

  return usage;
}
