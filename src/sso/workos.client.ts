import { WorkOS } from '@workos-inc/node';
import type { AppConfig } from '../../config/configuration.js';
import { SsoError } from './sso.errors.js';

export const WORKOS = Symbol('WORKOS');

/**
 * The WorkOS SDK client, or null when SSO is not configured (no WORKOS_API_KEY). Pointed at
 * WORKOS_API_HOST when set (the local stand-in in development and tests). Retries are the SDK's.
 */
export function createWorkOS(config: AppConfig['workos']): WorkOS | null {
  if (!config.apiKey || !config.clientId) return null;
  return new WorkOS(config.apiKey, {
    clientId: config.clientId,
    ...(config.apiHost ? { apiHostname: config.apiHost.hostname, port: config.apiHost.port, https: config.apiHost.https } : {}),
  });
}

export function requireWorkOS(workos: WorkOS | null): WorkOS {
  if (!workos) throw new SsoError('SSO_NOT_CONFIGURED', 'single sign-on is not configured on this platform (WORKOS_API_KEY, WORKOS_CLIENT_ID)', undefined, { 'retry-after': '3600' });
  return workos;
}
