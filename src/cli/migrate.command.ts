import { Command } from 'commander';
import { CliFailure } from './cli.errors.js';
import { result } from './output.js';
import { loadCliConfig, withPreparedDatabases } from './session.js';

export function migrateCommand(): Command {
  return new Command('migrate')
    .description(
      'Bring every database up to date, as the app does when it starts: roles (embedded servers), control plane, ' +
        'shared tier, then the tenant migrations on every schema and dedicated placement, with a progress bar.',
    )
    .addHelpText(
      'after',
      `
Forward-only and safe to repeat: what is applied already is skipped, and concurrent runners
(app instances starting) wait for each other. Progress goes to stderr, the summary to stdout.

Examples:
  $ npm run cli -- migrate
  $ DATABASE_URL=postgres://owner:...@db:5432/tenancy npm run cli -- migrate`,
    )
    .action(async () => {
      const config = loadCliConfig();
      await withPreparedDatabases(config, async (runtime, placements) => {
        const failed = [...runtime.failedPlacements.values()];
        if (failed.length) {
          throw new CliFailure(
            `${failed.length} of ${placements} tenant placements failed to migrate:\n` +
              failed.map((f) => `  ${f.tenant}: ${f.reason}`).join('\n'),
          );
        }
        const servers = [...runtime.servers.keys()].join(', ');
        result(
          `migrations are up to date: control plane, shared tier and ${placements} tenant placement${placements === 1 ? '' : 's'} ` +
            `(schema and dedicated tiers) on servers ${servers}`,
        );
      });
    });
}
