import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { v7 as uuidv7 } from 'uuid';
import type { AppConfig } from '../../config/configuration.js';
import { NotifiedCache } from '../tenancy/notified-cache.js';
import { RoutingTable } from '../tenancy/routing-table.service.js';
import type { Queryable } from '../tenancy/tenant-directory.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';

const MAX_CACHED = 200_000;

export type SessionMethod = 'dev' | 'sso';

/** A session as cached: null when there is no such session. */
type CachedSession = { userId: string; expiresAt: number; revoked: boolean } | null;

const usable = (s: CachedSession, userId: string) => s !== null && !s.revoked && s.userId === userId && s.expiresAt > Date.now();

interface SessionRow {
  user_id: string;
  expires_at: Date;
  revoked_at: Date | null;
}

/**
 * Server-side sessions: every token names one, and a request is accepted only while its session
 * is neither expired nor revoked. Checks are cached in memory, so the common request pays a map
 * lookup and no query; a revocation (logout, sign out everywhere, directory deprovisioning) is
 * announced through the routing listener's NOTIFY and every instance drops it at once. While
 * that listener is down nothing is cached, as for routes.
 */
@Injectable()
export class SessionStore {
  private readonly cache: NotifiedCache<CachedSession>;

  constructor(
    private readonly pools: TenantPools,
    routing: RoutingTable,
    config: ConfigService<AppConfig, true>,
  ) {
    this.cache = new NotifiedCache((id) => this.read(id), {
      ttlMs: config.get('routingCacheTtlMs', { infer: true }),
      isListening: () => routing.isListening(),
      maxEntries: MAX_CACHED,
    });
    routing.subscribe('session', (msg) => {
      if (msg && typeof msg.sessionId === 'string') this.cache.forget(msg.sessionId);
      else this.cache.clear();
    });
  }

  /** Opens a session; `tenantId` is the tenant whose identity provider signed the user in (SSO). */
  async create(userId: string, method: SessionMethod, ttlSeconds: number, tenantId: string | null = null, q: Queryable = this.pools.control()): Promise<{ id: string; expiresAt: Date }> {
    const id = uuidv7();
    const rows = await q.query<Array<{ expires_at: Date }>>(
      `INSERT INTO control.sessions (id, user_id, method, tenant_id, expires_at)
       VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING expires_at`,
      [id, userId, method, tenantId, ttlSeconds],
    );
    return { id, expiresAt: rows[0].expires_at };
  }

  /** Whether a session is usable by this user now: synchronous on a cache hit. */
  isActive(sessionId: string, userId: string): boolean | Promise<boolean> {
    const session = this.cache.get(sessionId);
    return session instanceof Promise ? session.then((s) => usable(s, userId)) : usable(session, userId);
  }

  async revoke(sessionId: string, reason: string): Promise<boolean> {
    const rows = await this.pools.control().query<Array<{ id: string }>>(
      // In a WITH: TypeORM answers [rows, count] for a bare UPDATE ... RETURNING.
      `WITH r AS (UPDATE control.sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id) SELECT id FROM r`,
      [sessionId, reason],
    );
    this.forget(rows);
    return rows.length > 0;
  }

  /** Sign out everywhere: every open session of the user. */
  async revokeAllOf(userId: string, reason: string): Promise<number> {
    const rows = await this.pools.control().query<Array<{ id: string }>>(
      `WITH r AS (UPDATE control.sessions SET revoked_at = now(), revoked_reason = $2 WHERE user_id = $1 AND revoked_at IS NULL RETURNING id) SELECT id FROM r`,
      [userId, reason],
    );
    this.forget(rows);
    return rows.length;
  }

  /** Deprovisioning: the sessions a tenant's identity provider opened for this user. */
  async revokeForTenant(tenantId: string, userId: string, reason: string, q: Queryable = this.pools.control()): Promise<number> {
    const rows = await q.query<Array<{ id: string }>>(
      `WITH r AS (UPDATE control.sessions SET revoked_at = now(), revoked_reason = $3
                  WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING id) SELECT id FROM r`,
      [tenantId, userId, reason],
    );
    this.forget(rows);
    return rows.length;
  }

  /** Forgets sessions that ended a week ago or more (the sweeper's step); their tokens expired long since. */
  async purgeEnded(): Promise<number> {
    const rows = await this.pools.control().query<Array<{ id: string }>>(
      `WITH r AS (DELETE FROM control.sessions WHERE expires_at < now() - interval '7 days' OR revoked_at < now() - interval '7 days' RETURNING id) SELECT id FROM r`,
    );
    return rows.length;
  }

  private async read(sessionId: string): Promise<CachedSession> {
    const rows = await this.pools.control().query<SessionRow[]>('SELECT user_id, expires_at, revoked_at FROM control.sessions WHERE id = $1', [sessionId]);
    return rows.length ? { userId: rows[0].user_id, expiresAt: rows[0].expires_at.getTime(), revoked: rows[0].revoked_at !== null } : null;
  }

  private forget(rows: Array<{ id: string }>): void {
    for (const r of rows) this.cache.forget(r.id);
  }
}
