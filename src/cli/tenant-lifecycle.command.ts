import { Command, InvalidArgumentError } from 'commander';
import { SLUG_PATTERN, SLUG_RULE } from '../tenancy/tenant-route.js';
import { UsageError } from './cli.errors.js';
import { note } from './output.js';
import type { LifecycleChange } from './tenant-lifecycle.js';

function parseSlug(value: string): string {
  if (!SLUG_PATTERN.test(value)) throw new InvalidArgumentError(SLUG_RULE);
  return value;
}

function parseReason(value: string): string {
  const length = [...value].length;
  if (value.includes('\u0000') || length < 1 || length > 500) throw new InvalidArgumentError('must be 1 to 500 characters');
  return value;
}

const DONE: Record<LifecycleChange, string> = {
  suspend: 'suspended: its members get 403 TENANT_SUSPENDED with the reason; its data is kept',
  reactivate: 'active again',
  delete: 'scheduled for deletion: its members get 403 TENANT_PENDING_DELETION; restore it before the date above, or it is purged',
  restore: 'restored: active again, with its data',
};

function change(tenants: Command, name: LifecycleChange, description: string, examples: string): Command {
  return tenants
    .command(name)
    .description(description)
    .argument('<slug>', 'the tenant', parseSlug)
    .addHelpText('after', `\nThe same code as the API's; the platform audit log records the OS user as the operator.\n\nExamples:\n${examples}`)
    .action(async (slug: string, opts: { reason?: string }) => {
      const { changeTenant, printTenant } = await import('./tenant-lifecycle.js');
      const tenant = await changeTenant(slug, name, opts.reason);
      printTenant(tenant);
      note(`tenant '${tenant.slug}' is ${DONE[name]}`);
    });
}

/** tenants suspend | reactivate | delete | restore | purge */
export function addLifecycleCommands(tenants: Command): void {
  change(tenants, 'suspend', 'Suspend an active tenant (its members get 403 with the reason; nothing is deleted)', '  $ npm run cli -- tenants suspend acme --reason "invoice 2026-031 unpaid"').requiredOption(
    '--reason <text>',
    'shown to the tenant\'s members (1-500 characters)',
    parseReason,
  );
  change(tenants, 'reactivate', 'Reactivate a suspended tenant', '  $ npm run cli -- tenants reactivate acme');
  change(
    tenants,
    'delete',
    'Schedule the deletion of a tenant: closed to its members at once, purged after the grace period (TENANT_DELETION_GRACE_DAYS)',
    '  $ npm run cli -- tenants delete acme',
  );
  change(tenants, 'restore', 'Restore a tenant scheduled for deletion, until its purge starts', '  $ npm run cli -- tenants restore acme');

  tenants
    .command('purge')
    .description('Purge a tenant whose grace period is over (or, with --due, every such tenant) and print the purge receipt')
    .argument('[slug]', 'the tenant (scheduled for deletion, grace period over)', parseSlug)
    .option('--due', 'every tenant whose grace period is over, with a progress bar')
    .option('--json', 'print the receipt as recorded (JSON), to verify or archive it')
    .addHelpText(
      'after',
      `
Removes the tenant's rows (shared tier), its schema or database, the source a finished move left
behind, its memberships and its routing row. The receipt goes to the platform audit log
(action tenant.purged) with the SHA-256 of its canonical JSON. Each app instance also purges
due tenants by itself every LIFECYCLE_SWEEP_INTERVAL_MS.

Examples:
  $ npm run cli -- tenants purge acme
  $ npm run cli -- tenants purge acme --json > acme-purge-receipt.json
  $ npm run cli -- tenants purge --due`,
    )
    .action(async (slug: string | undefined, opts: { due?: boolean; json?: boolean }) => {
      if (slug && opts.due) throw new UsageError('name a tenant or give --due, not both');
      if (!slug && !opts.due) throw new UsageError('name the tenant to purge, or give --due for every tenant whose grace period is over');
      const lifecycle = await import('./tenant-lifecycle.js');
      if (opts.due) {
        lifecycle.printSweep(await lifecycle.purgeDueTenants(), opts.json ?? false);
        return;
      }
      lifecycle.printReceipt(await lifecycle.purgeTenant(slug!), opts.json ?? false);
    });
}
