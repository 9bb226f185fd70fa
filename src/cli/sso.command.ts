import { NestFactory } from '@nestjs/core';
import { Command } from 'commander';
import { AppModule } from '../app.module.js';
import { DirectorySyncReconciler, ReconcileReport } from '../sso/directory-sync.reconciler.js';
import { CliFailure } from './cli.errors.js';
import { note, printTable, result } from './output.js';
import { loadCliConfig, withJwtSecret, withPreparedDatabases } from './session.js';

/** The app's reconciler in an application context; no HTTP, no background processing or sweeps. */
async function withReconciler<T>(fn: (reconciler: DirectorySyncReconciler) => Promise<T>): Promise<T> {
  const config = withJwtSecret(loadCliConfig());
  config.lifecycle.sweepIntervalMs = 0;
  // The command drains the events itself, in this process, and reports what happened.
  config.workos.events.pollMs = 0;
  if (!config.workos.apiKey || !config.workos.clientId) {
    throw new CliFailure('WorkOS is not configured: set WORKOS_API_KEY and WORKOS_CLIENT_ID (and WORKOS_API_HOST for another API host)');
  }
  return withPreparedDatabases(config, async (runtime) => {
    const app = await NestFactory.createApplicationContext(AppModule.forRoot(config, runtime), { logger: false, abortOnError: false });
    try {
      return await fn(app.get(DirectorySyncReconciler));
    } finally {
      await app.close();
    }
  });
}

function printReport(report: ReconcileReport, json: boolean): void {
  if (json) {
    result(JSON.stringify(report, null, 2));
    return;
  }
  const rows = Object.entries(report.byEvent)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([event, c]) => [event, c.fetched, c.stored, c.fetched - c.stored, c.processed, c.ignored, c.pending, c.failed]);
  const total = rows.reduce((sum, r) => sum.map((v, i) => (i === 0 ? v : Number(v) + Number(r[i]))), ['total', 0, 0, 0, 0, 0, 0, 0]);
  printTable(['event', 'fetched', 'new', 'already stored', 'processed', 'ignored', 'pending (retrying)', 'failed'], rows.length ? [...rows, total] : [total]);
  result(`cursor: ${report.cursorBefore ?? '(start)'} -> ${report.cursorAfter ?? '(start)'} in ${report.pages} page(s)`);
}

export function ssoCommand(): Command {
  const sso = new Command('sso').description('Enterprise SSO and directory sync (WorkOS)');

  sso
    .command('reconcile')
    .description("Pull the directory and connection events webhooks missed from WorkOS's events API, from the stored cursor, and apply them")
    .option('--retry-failed', 'first give events that failed for good a fresh series of attempts')
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      `
Events are stored by id exactly as webhook deliveries are, so an event already received is
neither stored nor applied again; the cursor (control.workos_event_cursor) advances after each
page, so a run interrupted half way resumes where it stopped. Progress goes to stderr, one line
per page; a table per event type at the end. Needs WORKOS_API_KEY and WORKOS_CLIENT_ID.

Examples:
  $ npm run cli -- sso reconcile
  $ npm run cli -- sso reconcile --retry-failed --json`,
    )
    .action(async (opts: { retryFailed?: boolean; json?: boolean }) => {
      const report = await withReconciler(async (reconciler) => {
        if (opts.retryFailed) note(`${await reconciler.retryFailed()} failed event(s) queued again`);
        return reconciler.reconcile((p) => note(`page ${p.page}: ${p.fetched} event(s), ${p.stored} new; cursor ${p.cursor}`));
      });
      printReport(report, opts.json === true);
      const failed = Object.values(report.byEvent).reduce((n, c) => n + c.failed, 0);
      if (failed) throw new CliFailure(`${failed} event(s) failed; see control.workos_events.last_error, then run again with --retry-failed`);
    });

  return sso;
}
