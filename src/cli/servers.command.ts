import { Command } from 'commander';
import { CONTROL_SCHEMA, withOwner } from '../tenancy/placements.js';
import { explainMissingControlPlane } from './cli.errors.js';
import { note, printTable } from './output.js';
import { loadCliConfig, withServers } from './session.js';

interface ServerRow {
  key: string;
  host: string;
  port: number;
  tenants: number;
  shared: number;
  schema: number;
  dedicated: number;
}

export function serversCommand(): Command {
  const servers = new Command('servers').description('The registry of database servers tenants are placed on');

  servers
    .command('list')
    .description('Table of registered servers: key, host, port and the tenants placed on each (never credentials)')
    .addHelpText(
      'after',
      `
Servers are registered by the app (or migrate) from DATABASE_URL and DATABASE_SECONDARY_URL.
Tenants whose provisioning failed are not counted.

Example:
  $ npm run cli -- servers list`,
    )
    .action(async () => {
      const config = loadCliConfig();
      const rows = await withServers(config, (runtime) =>
        withOwner(runtime.primary, runtime.primary.database, async (c) =>
          (
            await c.query<ServerRow>(
              `SELECT s.key, s.host, s.port,
                      count(t.id)::int AS tenants,
                      count(t.id) FILTER (WHERE t.tier = 'shared')::int AS shared,
                      count(t.id) FILTER (WHERE t.tier = 'schema')::int AS schema,
                      count(t.id) FILTER (WHERE t.tier = 'dedicated')::int AS dedicated
                 FROM ${CONTROL_SCHEMA}.database_servers s
                 LEFT JOIN ${CONTROL_SCHEMA}.tenants t ON t.server_key = s.key AND t.status <> 'failed'
                GROUP BY s.key ORDER BY s.key`,
            )
          ).rows,
        ).catch(explainMissingControlPlane),
      );
      printTable(
        ['key', 'host', 'port', 'tenants', 'shared', 'schema', 'dedicated'],
        rows.map((r) => [r.key, r.host, r.port, r.tenants, r.shared, r.schema, r.dedicated]),
      );
      if (!rows.length) note('no servers are registered yet: run `npm run cli -- migrate` (or start the app) once');
    });

  return servers;
}
