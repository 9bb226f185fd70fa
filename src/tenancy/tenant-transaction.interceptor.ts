import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import pg from 'pg';
import { defer, lastValueFrom, Observable } from 'rxjs';
import { QueryFailedError } from 'typeorm';
import { TenancyError } from './tenancy.errors.js';
import { Compartment, TenantBulkhead, TenantLimitCounters } from './bulkhead.js';
import type { TenantRequest } from './tenant-access.guard.js';
import { RequestInfo, TenantContextStore, TenantSession } from './tenant-context.js';
import { TenantPools } from './tenant-pools.service.js';
import type { TenantAccess } from './tenant-route.js';

/** What the audit log keeps of a request: its id, the client's address and user agent (truncated). */
function requestInfo(req: TenantRequest): RequestInfo {
  const ua = req.headers['user-agent'];
  return { id: String(req.id), ip: req.ip, userAgent: typeof ua === 'string' ? ua.slice(0, 500) : undefined };
}

/**
 * The plan's cap on the tenant's connections at once, or null. Dedicated databases have pools of
 * their own, outside the shared pool this protects: no cap there.
 */
function concurrencyCap(access: TenantAccess): number | null {
  const max = access.limits?.maxConcurrent;
  return max === null || max === undefined || access.route.placement.tier === 'dedicated' ? null : max;
}

/** A query the plan's statement timeout cancelled (57014 is also a cancel on request: told apart by its message). */
function isStatementTimeout(err: unknown): boolean {
  const e = err instanceof QueryFailedError ? (err.driverError as { code?: string; message?: string }) : err instanceof pg.DatabaseError ? err : undefined;
  return e?.code === '57014' && /statement timeout/.test(e.message ?? '');
}

/**
 * Runs a tenant-scoped handler in one transaction on its tenant's placement: commit on success,
 * roll back otherwise. The transaction runs under the plan's statement timeout, and on the shared
 * pool within the tenant's concurrency cap: the slot is taken before the connection, and given
 * back after it, whatever happens.
 */
@Injectable()
export class TenantTransactionInterceptor implements NestInterceptor {
  constructor(
    private readonly pools: TenantPools,
    private readonly store: TenantContextStore,
    private readonly bulkhead: TenantBulkhead,
    private readonly counters: TenantLimitCounters,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = context.switchToHttp().getRequest<TenantRequest>();
    const access = req.tenantAccess;
    if (!access) return next.handle();
    const request = requestInfo(req);
    const cap = concurrencyCap(access);
    return defer(async () => {
      let slot: Compartment | undefined;
      if (cap !== null) {
        // A free slot comes back synchronously; only a request that has to wait gets a promise.
        const entered = this.bulkhead.enter(access.route.id, cap, context.switchToHttp().getResponse<FastifyReply>().raw);
        slot = entered instanceof Promise ? await entered : entered;
      }
      // Time spent waiting for a slot is not database time.
      const started = performance.now();
      try {
        const lease = this.pools.lease(access.route.placement);
        const session = await TenantSession.begin(access, lease instanceof Promise ? await lease : lease);
        let result: unknown;
        try {
          result = await this.store.run({ access, session, request }, () => lastValueFrom(next.handle(), { defaultValue: undefined }));
        } catch (err) {
          throw (await session.rollback()) ?? err;
        }
        await session.commit();
        return result;
      } catch (err) {
        throw this.explained(access, err);
      } finally {
        if (slot) this.bulkhead.leave(slot);
        req.dbTimeMs = performance.now() - started;
      }
    });
  }

  /** A query cancelled by the plan's statement timeout becomes 503 QUERY_TIMEOUT naming the limit; other errors pass. */
  private explained(access: TenantAccess, err: unknown): unknown {
    const ms = access.limits?.statementTimeoutMs;
    if (!ms || !isStatementTimeout(err)) return err;
    this.counters.statementTimeouts++;
    return new TenancyError('QUERY_TIMEOUT', `the query ran longer than the ${ms} ms this plan allows and was cancelled`, undefined, {
      'retry-after': String(Math.max(1, Math.ceil(ms / 1000))),
    });
  }
}

/**
 * For tenant-scoped routes that touch only the control plane (members): the tenant is resolved
 * and checked, but no connection is held for a tenant transaction they would not use.
 */
@Injectable()
export class TenantAccessInterceptor implements NestInterceptor {
  constructor(private readonly store: TenantContextStore) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = context.switchToHttp().getRequest<TenantRequest>();
    const access = req.tenantAccess;
    if (!access) return next.handle();
    const request = requestInfo(req);
    return new Observable((subscriber) => this.store.run({ access, request }, () => next.handle().subscribe(subscriber)));
  }
}
