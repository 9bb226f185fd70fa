/**
 * `npm run workos:stand-in`: the WorkOS stand-in for local development.
 *
 * Options (environment; its own names, so a real WORKOS_API_KEY in the shell is never picked up):
 *   WORKOS_STAND_IN_PORT         default 8484
 *   WORKOS_STAND_IN_HOST         default 127.0.0.1 (the control API answers loopback only)
 *   WORKOS_STAND_IN_API_KEY      default sk_test_stand_in
 *   WORKOS_STAND_IN_CLIENT_ID    default client_stand_in
 *   WORKOS_STAND_IN_WEBHOOK_SECRET  default whsec_stand_in
 *   WORKOS_STAND_IN_WEBHOOK_URL  optional: deliver every event there (e.g. http://127.0.0.1:3000/webhooks/workos)
 */
import { standInCheatSheet, startWorkOSStandIn } from './workos-stand-in.js';

function fail(variable: string, why: string): never {
  console.error(`workos-stand-in: ${variable} ${why}`);
  process.exit(1);
}

function setting(variable: string, fallback: string): string {
  const value = process.env[variable];
  return value === undefined || value === '' ? fallback : value;
}

const portText = setting('WORKOS_STAND_IN_PORT', '8484');
const port = Number(portText);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail('WORKOS_STAND_IN_PORT', `must be a port number, got '${portText}'`);
const webhookUrl = process.env.WORKOS_STAND_IN_WEBHOOK_URL || undefined;
if (webhookUrl) {
  try {
    new URL(webhookUrl);
  } catch {
    fail('WORKOS_STAND_IN_WEBHOOK_URL', `must be a URL, got '${webhookUrl}'`);
  }
}

const standIn = await startWorkOSStandIn({
  port,
  host: setting('WORKOS_STAND_IN_HOST', '127.0.0.1'),
  apiKey: setting('WORKOS_STAND_IN_API_KEY', 'sk_test_stand_in'),
  clientId: setting('WORKOS_STAND_IN_CLIENT_ID', 'client_stand_in'),
  webhookSecret: setting('WORKOS_STAND_IN_WEBHOOK_SECRET', 'whsec_stand_in'),
  webhookUrl,
  webhookRetries: 2,
}).catch((err: NodeJS.ErrnoException) => {
  if (err.code === 'EADDRINUSE') fail('WORKOS_STAND_IN_PORT', `${portText} is already in use`);
  throw err;
});

const lines = [
  `WorkOS stand-in listening on ${standIn.url}`,
  '',
  '# Point the app at it (plain http):',
  ...Object.entries(standIn.env).map(([k, v]) => `${k}=${v}`),
  '',
  webhookUrl ? `# Every recorded event is delivered to ${webhookUrl}` : '# No webhook URL yet: set WORKOS_STAND_IN_WEBHOOK_URL or PUT /_stand-in/webhook',
  '',
  '# Control API (loopback, no key); replace ORG_ID, CONN_ID, USER_ID, GROUP_ID, EVENT_ID:',
  ...standInCheatSheet(standIn.url, standIn.apiKey),
  '',
  'Ctrl-C stops it; all state is in memory.',
];
console.log(lines.join('\n'));

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void standIn.stop().then(() => process.exit(0));
  });
}
