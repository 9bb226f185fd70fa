import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface LocalSecrets {
  superuserPassword: string;
  ownerPassword: string;
  appPassword: string;
  jwtSecret: string;
}

/**
 * Secrets for the embedded development setup: generated once, kept beside the data they
 * protect (mode 0600), never in code and never logged. Production passes real ones as variables.
 */
export function loadOrCreateLocalSecrets(file: string): LocalSecrets {
  const fresh = (): string => randomBytes(24).toString('base64url');
  let existing: Partial<LocalSecrets> = {};
  if (existsSync(file)) existing = JSON.parse(readFileSync(file, 'utf8')) as Partial<LocalSecrets>;
  const secrets: LocalSecrets = {
    superuserPassword: existing.superuserPassword ?? fresh(),
    ownerPassword: existing.ownerPassword ?? fresh(),
    appPassword: existing.appPassword ?? fresh(),
    jwtSecret: existing.jwtSecret ?? fresh() + fresh(),
  };
  if (JSON.stringify(secrets) !== JSON.stringify(existing)) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
    chmodSync(file, 0o600);
  }
  return secrets;
}
