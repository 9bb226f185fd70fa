import { Command, InvalidArgumentError, Option } from 'commander';
import { CONTROL_SCHEMA, withOwner } from '../tenancy/placements.js';
import { TIERS, type TenantStatus, type Tier } from '../tenancy/tenant-route.js';
import { explainMissingControlPlane } from './cli.errors.js';
import { formatTime, note, printTable } from './output.js';
import { addExportCommands } from './tenant-export.command.js';
import { addLifecycleCommands } from './tenant-lifecycle.command.js';
import { addMoveCommand } from './moves.command.js';
import { loadCliConfig, withJwtSecret, withServers } from './session.js';
import type { CreateOptions } from './tenant-create.js';

const MAX_LIST = 10_000;

interface TenantLine {
  slug: string;
  id: string;
  tier: Tier;
  server: string;
  status: TenantStatus;
  createdAt: Date;
}

function printTenants(tenants: TenantLine[]): void {
  printTable(
    ['slug', 'id', 'tier', 'server', 'status', 'created'],
    tenants.map((t) => [t.slug, t.id, t.tier, t.server, t.status, formatTime(t.createdAt)]),
  );
}

function parseLimit(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_LIST) throw new InvalidArgumentError(`must be a whole number from 1 to ${MAX_LIST}`);
  return n;
}

export function tenantsCommand(): Command {
  const tenants = new Command('tenants').description('List, create, suspend, delete and purge tenants (the routing table in control.tenants)');

  tenants
    .command('list')
    .description('Table of tenants, oldest first: slug, id, tier, server, status, created')
    .addOption(new Option('--limit <n>', `at most this many rows (1-${MAX_LIST})`).default(50).argParser(parseLimit))
    .addHelpText(
      'after',
      `
Read-only: nothing is migrated. The count of all tenants goes to stderr.

Examples:
  $ npm run cli -- tenants list
  $ npm run cli -- tenants list --limit 500`,
    )
    .action(async (opts: { limit: number }) => {
      const config = loadCliConfig();
      const { rows, total } = await withServers(config, (runtime) =>
        withOwner(runtime.primary, runtime.primary.database, async (c) => {
          const page = await c.query<{ slug: string; id: string; tier: Tier; server_key: string; status: TenantStatus; created_at: Date }>(
            `SELECT slug, id, tier, server_key, status, created_at FROM ${CONTROL_SCHEMA}.tenants
              ORDER BY created_at, id LIMIT $1`,
            [opts.limit],
          );
          const count = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${CONTROL_SCHEMA}.tenants`);
          return { rows: page.rows, total: count.rows[0].n };
        }).catch(explainMissingControlPlane),
      );
      printTenants(rows.map((r) => ({ ...r, server: r.server_key, createdAt: r.created_at })));
      note(`${rows.length} of ${total} tenant${total === 1 ? '' : 's'}${rows.length < total ? ' (raise --limit to see more)' : ''}`);
    });

  tenants
    .command('create')
    .description('Provision a tenant on a tier, through the same code as POST /tenants, and make <email> its first owner')
    .argument('<slug>', 'unique name in URLs: 3-63 lowercase letters, digits or dashes, not starting or ending with a dash')
    .requiredOption('--name <name>', 'display name (1-200 characters)')
    .addOption(new Option('--tier <tier>', 'shared: rows under RLS; schema: its own schema; dedicated: its own database').choices(TIERS).makeOptionMandatory())
    .requiredOption('--owner <email>', 'email of the first owner; the user is created if new')
    .option('--server <key>', 'registered server key, dedicated tier only (default: the secondary server when there is one)')
    .option('--plan <key>', 'billing plan: free, pro or enterprise (default: BILLING_DEFAULT_PLAN when it allows the tier, else the cheapest plan that does)')
    .addHelpText(
      'after',
      `
The databases are first brought up to date exactly as the app does when it starts (see migrate).
A failure half way removes what was made; the slug is free again.

Examples:
  $ npm run cli -- tenants create acme --name "Acme Inc." --tier shared --owner ops@acme.test
  $ npm run cli -- tenants create globex --name Globex --tier schema --owner it@globex.test
  $ npm run cli -- tenants create initech --name Initech --tier dedicated --owner it@initech.test --server secondary --plan enterprise`,
    )
    .action(async (slug: string, opts: CreateOptions) => {
      const { validateCreate, provisionTenant } = await import('./tenant-create.js');
      const input = validateCreate(slug, opts);
      const route = await provisionTenant(withJwtSecret(loadCliConfig()), input);
      printTenants([{ ...route, tier: route.placement.tier, server: route.placement.serverKey }]);
      note(`tenant '${route.slug}' is ${route.status} (${route.placement.tier} on ${route.placement.serverKey}); owner: ${input.ownerEmail}`);
    });

  addLifecycleCommands(tenants);
  addExportCommands(tenants);
  addMoveCommand(tenants);
  return tenants;
}
