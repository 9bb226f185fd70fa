import type cliProgress from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import { prepareControlPlane } from '../tenancy/infrastructure.js';
import {
  placementLabel,
  RolloutOptionsError,
  RolloutProgress,
  RolloutReport,
  runMigrationRollout,
} from '../tenancy/migration-rollout.js';
import { SLUG_PATTERN } from '../tenancy/tenant-route.js';
import { CliFailure, UsageError } from './cli.errors.js';
import { note, printTable, progressBar, result } from './output.js';
import { loadCliConfig, withServers } from './session.js';

const MAX_CONCURRENCY = 64;

interface MigrateOptions {
  waves?: number[];
  concurrency?: number;
  canary?: string[];
  stopOnFailure?: boolean;
  recheck?: boolean;
}

function parseWaves(value: string): number[] {
  const sizes = value.split(',').map((v) => v.trim());
  if (!sizes.every((v) => /^\d+$/.test(v) && Number(v) >= 1)) {
    throw new InvalidArgumentError('must be comma-separated whole numbers of at least 1, e.g. 1,10');
  }
  return sizes.map(Number);
}

function parseConcurrency(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_CONCURRENCY) throw new InvalidArgumentError(`must be a whole number from 1 to ${MAX_CONCURRENCY}`);
  return n;
}

function parseCanaries(value: string): string[] {
  const slugs = value.split(',').map((v) => v.trim()).filter(Boolean);
  const bad = slugs.filter((s) => !SLUG_PATTERN.test(s));
  if (!slugs.length || bad.length) throw new InvalidArgumentError(`must be comma-separated tenant slugs${bad.length ? ` ('${bad.join("', '")}' is not one)` : ''}`);
  return slugs;
}

/** Counts, ETA and the wave under way, on stderr; on a terminal it redraws in place, elsewhere a line every few seconds. */
class RolloutProgressBar {
  private bar?: cliProgress.SingleBar;

  readonly onProgress = (p: RolloutProgress): void => {
    const payload = { migrated: p.migrated, upToDate: p.upToDate, failed: p.failed, wave: `${p.wave}/${p.waves}`, placement: p.placement };
    if (!this.bar) {
      this.bar = progressBar(
        'tenant placements [{bar}] {percentage}% | {value}/{total} | migrated {migrated}, up to date {upToDate}, failed {failed} | ' +
          'wave {wave} | ETA {eta_formatted} | {placement}',
        { etaBuffer: 50 },
      );
      this.bar.start(p.total, p.done, payload);
      return;
    }
    this.bar.update(p.done, payload);
  };

  /** Idempotent: also called on failure, so the bar's timer never keeps the process alive. */
  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

function printReport(report: RolloutReport, servers: string[]): void {
  printTable(
    ['placements', 'migrated', 'already up to date', 'failed', 'skipped', 'seconds'],
    [[report.total, report.migrated, report.upToDate, report.failed.length, report.skipped, (report.durationMs / 1000).toFixed(1)]],
  );
  if (report.waves.length) {
    printTable(
      ['wave', 'placements', 'migrated', 'up to date', 'failed'],
      report.waves.map((w) => [w.wave, w.placements, w.migrated, w.upToDate, w.failed]),
    );
  }
  if (report.failed.length) {
    printTable(
      ['failed placement', 'wave', 'database/schema', 'version', 'error'],
      report.failed.map((f) => [
        placementLabel(f.placement),
        f.wave,
        `${f.placement.database}/${f.placement.schema}`,
        f.version ?? '',
        f.error ?? '',
      ]),
    );
  }
  const own = report.total - 1;
  result(
    `tenant migrations (latest ${report.latest ?? 'none'}) on ${report.total} placement${report.total === 1 ? '' : 's'}: the shared tier and ` +
      `${own} tenant placement${own === 1 ? '' : 's'} (schema and dedicated tiers) on servers ${servers.join(', ')}`,
  );
}

export function migrateCommand(): Command {
  return new Command('migrate')
    .description(
      'Bring every database up to date: roles (embedded servers), control plane, then the tenant migrations on every ' +
        'placement (each schema and dedicated tenant, the shared tier last) in waves, with a progress bar and a summary.',
    )
    .addOption(
      new Option('--waves <sizes>', 'sizes of the first waves, comma-separated; all remaining placements follow as one more wave (default: MIGRATION_WAVES, 1,10)').argParser(
        parseWaves,
      ),
    )
    .addOption(
      new Option('--concurrency <n>', `placements migrated at the same time within a wave, 1-${MAX_CONCURRENCY} (default: MIGRATION_CONCURRENCY, 4)`).argParser(
        parseConcurrency,
      ),
    )
    .addOption(
      new Option('--canary <slugs>', 'schema or dedicated tenants that form the first wave (default: the oldest placement that needs work)').argParser(
        parseCanaries,
      ),
    )
    .option('--stop-on-failure', 'after a wave with a failure, attempt no further wave (the rest are reported as skipped)')
    .option('--recheck', 'connect to every placement, even those the bookkeeping shows up to date')
    .addHelpText(
      'after',
      `
Order: the canary wave first, then waves of the given sizes, then all the rest, then the shared
tier's placement on its own (it holds most tenants). Every result is recorded in
control.placement_migrations (see \`migrations status\`). A placement that fails is recorded and
the rollout goes on (or stops after the wave with --stop-on-failure); app instances that start
while it is failed or behind set its tenants aside (503) until a later run succeeds.
Safe to repeat: placements recorded as up to date are skipped (unless --recheck) and what a
placement has already is never applied again. Progress goes to stderr, the summary to stdout.
Exit code 1 if any placement failed.

Examples:
  $ npm run migrate
  $ npm run cli -- migrate --waves 1,10,100 --concurrency 8
  $ npm run cli -- migrate --canary acme,globex --stop-on-failure
  $ npm run cli -- migrate --recheck
  $ DATABASE_URL=postgres://owner:...@db:5432/tenancy npm run cli -- migrate`,
    )
    .action(async (opts: MigrateOptions) => {
      const config = loadCliConfig();
      await withServers(config, async (runtime) => {
        await prepareControlPlane(runtime, note);
        const bar = new RolloutProgressBar();
        let report: RolloutReport;
        try {
          report = await runMigrationRollout(runtime, {
            waves: opts.waves ?? config.migrations.waves,
            concurrency: opts.concurrency ?? config.migrations.concurrency,
            canaries: opts.canary,
            stopOnFailure: opts.stopOnFailure,
            recheck: opts.recheck,
            onProgress: bar.onProgress,
          });
        } catch (err) {
          if (err instanceof RolloutOptionsError) throw new UsageError(err.message);
          throw err;
        } finally {
          bar.stop();
        }
        if (report.migrated) note(`tenant migrations applied to ${report.migrated} of ${report.total} placements`);
        printReport(report, [...runtime.servers.keys()]);
        if (report.failed.length) {
          throw new CliFailure(
            `${report.failed.length} of ${report.total} placements failed to migrate; they are recorded as failed and app instances ` +
              'set their tenants aside (503) when they start' +
              `${report.stopped ? `; stopped after wave ${report.waves.length}, ${report.skipped} placements skipped` : ''}. ` +
              'Fix them and run migrate again; `npm run cli -- migrations status --failed` lists them',
          );
        }
      });
    });
}
