/** A PostgreSQL server the platform can place tenants on. Credentials come from configuration only. */
export interface DatabaseServer {
  key: string;
  host: string;
  port: number;
  /** Database holding the control plane and the shared tier (primary), or the maintenance database (others). */
  database: string;
  ownerUser: string;
  ownerPassword: string;
  appUser: string;
  appPassword: string;
}

export function serverFromUrl(key: string, url: string, app: { user: string; password: string }): DatabaseServer {
  const u = new URL(url);
  return {
    key,
    host: decodeURIComponent(u.hostname) || 'localhost',
    port: Number(u.port || 5432),
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres',
    ownerUser: decodeURIComponent(u.username),
    ownerPassword: decodeURIComponent(u.password),
    appUser: app.user,
    appPassword: app.password,
  };
}

/** What may be shown of a server: never its credentials. */
export function describeServer(s: DatabaseServer): string {
  return `${s.key} (${s.host}:${s.port})`;
}
