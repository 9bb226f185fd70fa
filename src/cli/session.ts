import { connect } from 'node:net';
import { join } from 'node:path';
import { AppConfig, loadConfig, loadDotEnv } from '../../config/configuration.js';
import { loadOrCreateLocalSecrets } from '../../config/secrets.js';
import { openDatabaseRuntime, PlacementProgress, prepareDatabases } from '../tenancy/infrastructure.js';
import type { DatabaseRuntime } from '../tenancy/placements.js';
import { CliFailure } from './cli.errors.js';
import { note, PlacementProgressBar } from './output.js';

/** The app's own configuration (environment and ./.env), validated the same way; read only when a command runs. */
export function loadCliConfig(): AppConfig {
  loadDotEnv();
  return loadConfig();
}

/** What AppModule needs and the CLI never uses: a JWT secret, found as main.ts finds it in development. */
export function withJwtSecret(config: AppConfig): AppConfig {
  config.auth.jwtSecret ??= loadOrCreateLocalSecrets(join(config.database.embeddedDir, 'secrets.json')).jwtSecret;
  return config;
}

function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, timeout: 1_000 });
    const done = (answer: boolean) => {
      socket.destroy();
      resolve(answer);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

/** Without DATABASE_URL the CLI starts the embedded servers itself: say plainly when a running app holds them. */
async function assertEmbeddedPortsFree(config: AppConfig): Promise<void> {
  if (config.database.url) return;
  for (const port of [config.database.embeddedPort, config.database.embeddedPort + 1]) {
    if (await isListening(port)) {
      throw new CliFailure(
        `127.0.0.1:${port} is taken, so the embedded PostgreSQL servers cannot start (EMBEDDED_PG_PORT=${config.database.embeddedPort}); ` +
          'if the app is running with them, stop it first, or set DATABASE_URL to reach running servers',
      );
    }
  }
}

/** Servers only (embedded ones started if configured so), nothing migrated: for read-only commands. */
export async function withServers<T>(config: AppConfig, fn: (runtime: DatabaseRuntime) => Promise<T>): Promise<T> {
  await assertEmbeddedPortsFree(config);
  const runtime = await openDatabaseRuntime(config, note);
  try {
    return await fn(runtime);
  } finally {
    await runtime.stop();
  }
}

/**
 * The databases exactly as the app prepares them before serving (migrations on every placement,
 * server registry, runtime-role check), with a progress bar over the tenant placements.
 */
export async function withPreparedDatabases<T>(
  config: AppConfig,
  fn: (runtime: DatabaseRuntime, placements: number) => Promise<T>,
): Promise<T> {
  await assertEmbeddedPortsFree(config);
  const progress = new PlacementProgressBar();
  const onProgress: PlacementProgress = progress.onProgress;
  let runtime: DatabaseRuntime;
  try {
    runtime = await prepareDatabases(config, note, onProgress);
  } finally {
    progress.stop();
  }
  try {
    return await fn(runtime, progress.total);
  } finally {
    await runtime.stop();
  }
}
