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
  app.getHttpAdapter().getInstance().addHook('onClose', async () => runtime.stop());
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
