import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { defer, lastValueFrom, Observable } from 'rxjs';
import type { TenantRequest } from './tenant-access.guard.js';
import { RequestInfo, TenantContextStore, TenantSession } from './tenant-context.js';
import { TenantPools } from './tenant-pools.service.js';

/** What the audit log keeps of a request: its id, the client's address and user agent (truncated). */
function requestInfo(req: TenantRequest): RequestInfo {
  const ua = req.headers['user-agent'];
  return { id: String(req.id), ip: req.ip, userAgent: typeof ua === 'string' ? ua.slice(0, 500) : undefined };
}

/** Runs a tenant-scoped handler in one transaction on its tenant's placement: commit on success, roll back otherwise. */
@Injectable()
export class TenantTransactionInterceptor implements NestInterceptor {
  constructor(
    private readonly pools: TenantPools,
    private readonly store: TenantContextStore,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = context.switchToHttp().getRequest<TenantRequest>();
    const access = req.tenantAccess;
    if (!access) return next.handle();
    const request = requestInfo(req);
    return defer(async () => {
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
      } finally {
        req.dbTimeMs = performance.now() - started;
      }
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
