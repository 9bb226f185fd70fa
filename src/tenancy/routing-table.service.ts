import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import pg from 'pg';
import type { AppConfig } from '../../config/configuration.js';
import { DATABASE_RUNTIME, DatabaseRuntime } from './placements.js';
import { TenantPools } from './tenant-pools.service.js';
import type { Role, TenantRoute, TenantStatus, Tier } from './tenant-route.js';

export const ROUTING_CHANNEL = 'tenancy_routing';
const MAX_ENTRIES = 100_000;

interface Cached<T> {
  value: T;
  at: number;
}

export interface TenantRow {
  id: string;
  slug: string;
  name: string;
  status: TenantStatus;
  status_reason: string | null;
  tier: Tier;
  server_key: string;
  database_name: string;
  schema_name: string;
  deletion_requested_at: Date | null;
  purge_after: Date | null;
  created_at: Date;
  updated_at: Date;
}

export const TENANT_COLUMNS =
  'id, slug, name, status, status_reason, tier, server_key, database_name, schema_name, deletion_requested_at, purge_after, created_at, updated_at';

export function toRoute(r: TenantRow): TenantRoute {
  return {
    id: r.id,
    slug: r.slug,
    name: r.name,
    status: r.status,
    statusReason: r.status_reason,
    placement: { tier: r.tier, serverKey: r.server_key, database: r.database_name, schema: r.schema_name },
    deletionRequestedAt: r.deletion_requested_at,
    purgeAfter: r.purge_after,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/**
 * The routing table as every app instance sees it: tenant routes and memberships cached in
 * memory so that a request costs no lookup query, and dropped at once when any instance (or
 * plain SQL) changes them, through LISTEN/NOTIFY on the control database. While the listener
 * is down nothing is cached, so a missed notification can never serve a stale route.
 */
@Injectable()
export class RoutingTable implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(RoutingTable.name);
  private readonly routes = new Map<string, Cached<TenantRoute | null>>();
  /** tenant id -> user id -> role: forgetting a tenant drops one entry, whatever the number of users. */
  private readonly roles = new Map<string, Map<string, Cached<Role | null>>>();
  private generation = 0;
  private readonly subscribers = new Map<string, (msg: Record<string, unknown> | null) => void>();
  private listener?: pg.Client;
  private listening = false;
  private stopped = false;
  private reconnectTimer?: NodeJS.Timeout;
  private readonly ttlMs: number;

  constructor(
    private readonly pools: TenantPools,
    @Inject(DATABASE_RUNTIME) private readonly runtime: DatabaseRuntime,
    config: ConfigService<AppConfig, true>,
  ) {
    this.ttlMs = config.get('routingCacheTtlMs', { infer: true });
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.listen();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    await this.listener?.end().catch(() => undefined);
  }

  isListening(): boolean {
    return this.listening;
  }

  /** The route of a slug; synchronous on a cache hit, so a request pays no promise for it. */
  resolveSlug(slug: string): TenantRoute | null | Promise<TenantRoute | null> {
    return this.cached(this.routes, slug, async () => {
      const rows = await this.pools.control().query<TenantRow[]>(
        `SELECT ${TENANT_COLUMNS} FROM control.tenants WHERE slug = $1`,
        [slug],
      );
      return rows.length ? toRoute(rows[0]) : null;
    });
  }

  roleOf(tenantId: string, userId: string): Role | null | Promise<Role | null> {
    let ofTenant = this.roles.get(tenantId);
    if (!ofTenant) {
      if (this.roles.size >= MAX_ENTRIES) this.roles.clear();
      ofTenant = new Map();
      this.roles.set(tenantId, ofTenant);
    }
    return this.cached(ofTenant, userId, async () => {
      const rows = await this.pools.control().query<Array<{ role: Role }>>(
        'SELECT role FROM control.memberships WHERE tenant_id = $1 AND user_id = $2',
        [tenantId, userId],
      );
      return rows.length ? rows[0].role : null;
    });
  }

  /** Drops everything cached about one tenant (used locally right after a change, before NOTIFY arrives). */
  forgetTenant(slugs: Array<string | null | undefined>, tenantId?: string): void {
    this.generation++;
    for (const s of slugs) if (s) this.routes.delete(s);
    if (tenantId) this.roles.delete(tenantId);
  }

  forgetMembership(tenantId: string, userId: string): void {
    this.generation++;
    this.roles.get(tenantId)?.delete(userId);
  }

  private forgetAll(): void {
    this.generation++;
    this.routes.clear();
    this.roles.clear();
    for (const handler of this.subscribers.values()) handler(null);
  }

  private cached<T>(map: Map<string, Cached<T>>, key: string, load: () => Promise<T>): T | Promise<T> {
    const hit = map.get(key);
    const now = Date.now();
    if (hit && now - hit.at < this.ttlMs) return hit.value;
    const generation = this.generation;
    return load().then((value) => {
      // A change announced while we were loading wins over what we loaded.
      if (this.listening && generation === this.generation) {
        if (map.size >= MAX_ENTRIES) map.clear();
        map.set(key, { value, at: now });
      }
      return value;
    });
  }

  /**
   * Lets another cache ride on this listener: `handler` gets the messages of its kind, and null
   * whenever everything must be forgotten (the listener was lost, or a message was unreadable).
   */
  subscribe(kind: string, handler: (msg: Record<string, unknown> | null) => void): void {
    this.subscribers.set(kind, handler);
  }

  private onNotification(payload: string | undefined): void {
    try {
      const msg = JSON.parse(payload ?? '{}') as { kind?: string; tenantId?: string; userId?: string; slug?: string; oldSlug?: string };
      if (msg.kind === 'tenant') this.forgetTenant([msg.slug, msg.oldSlug], msg.tenantId);
      else if (msg.kind === 'membership' && msg.tenantId && msg.userId) this.forgetMembership(msg.tenantId, msg.userId);
      else if (msg.kind && this.subscribers.has(msg.kind)) this.subscribers.get(msg.kind)!(msg);
      else this.forgetAll();
    } catch {
      this.forgetAll();
    }
  }

  private async listen(): Promise<void> {
    const p = this.runtime.primary;
    const client = new pg.Client({
      host: p.host,
      port: p.port,
      user: p.appUser,
      password: p.appPassword,
      database: p.database,
      application_name: 'tenancy-routing-listener',
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
    });
    const lost = (why: string) => {
      if (this.listener !== client) return;
      this.listening = false;
      this.listener = undefined;
      this.forgetAll();
      client.end().catch(() => undefined);
      if (this.stopped) return;
      this.logger.warn(`routing cache listener lost (${why}); caching is off until it reconnects`);
      this.reconnectTimer = setTimeout(() => void this.listen().catch(() => undefined), 1_000);
    };
    client.on('notification', (n) => this.onNotification(n.payload));
    client.on('error', (err) => lost(err.message));
    client.on('end', () => lost('connection ended'));
    this.listener = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${ROUTING_CHANNEL}`);
      this.forgetAll();
      this.listening = true;
    } catch (err) {
      lost((err as Error).message);
    }
  }
}
