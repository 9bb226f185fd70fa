import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AuditService } from '../audit/audit.service.js';
import type { ErrorBody } from '../http/error.filter.js';
import { recordPlatformEvent } from '../lifecycle/platform-audit.js';
import { DATABASE_RUNTIME, DatabaseRuntime } from '../tenancy/placements.js';
import type { TenantRequest } from '../tenancy/tenant-access.guard.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { SupportGrantAccess, TenantRoute } from '../tenancy/tenant-route.js';

interface Use {
  grant: SupportGrantAccess;
  route: TenantRoute;
  userId: string;
  method: string;
  path: string;
  status: number;
  request: { id: string; ip?: string; userAgent?: string };
}

/**
 * Every request made under a support grant is recorded, with its outcome, in the platform audit
 * log and in the tenant's own audit log, before its response leaves: in Fastify's onSend, which
 * also sees requests the guard or the handler refused. The tenant entry is written in a
 * transaction of its own: a read grant's transaction is READ ONLY, and a refused request's is
 * rolled back. When recording fails, the response is replaced by a 503: nobody reads a tenant's
 * data through support access without a trace.
 */
@Injectable()
export class SupportRequestAudit implements OnModuleInit {
  private readonly logger = new Logger(SupportRequestAudit.name);

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly pools: TenantPools,
    private readonly audit: AuditService,
    @Inject(DATABASE_RUNTIME) private readonly runtime: DatabaseRuntime,
  ) {}

  onModuleInit(): void {
    // The CLI builds the app without an HTTP server: nothing to hook there.
    const fastify = this.adapterHost.httpAdapter?.getInstance?.() as FastifyInstance | undefined;
    if (!fastify || typeof fastify.addHook !== 'function') return;
    fastify.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
      const marked = (request as TenantRequest).supportGrant;
      const user = (request as TenantRequest).user;
      if (!marked || !user) return payload;
      const ua = request.headers['user-agent'];
      try {
        await this.record({
          grant: marked.grant,
          route: marked.route,
          userId: user.id,
          method: request.method,
          path: request.url.split('?')[0],
          status: reply.statusCode,
          request: { id: String(request.id), ip: request.ip, userAgent: typeof ua === 'string' ? ua.slice(0, 500) : undefined },
        });
        return payload;
      } catch (err) {
        this.logger.error({ err: (err as Error).message, requestId: request.id, tenantId: marked.route.id, grantId: marked.grant.id }, 'support access could not be audited; response withheld');
        const body: ErrorBody = {
          status: 503,
          code: 'DATABASE_BUSY',
          message: 'this support access could not be recorded in the audit logs, so its response is withheld; retry shortly',
          requestId: String(request.id),
        };
        void reply.code(503).header('retry-after', '1').header('content-type', 'application/json; charset=utf-8');
        return JSON.stringify(body);
      }
    });
  }

  private async record(use: Use): Promise<void> {
    const metadata = { grantId: use.grant.id, access: use.grant.access, method: use.method, path: use.path, status: use.status };
    await recordPlatformEvent(this.pools.control(), {
      actorKind: 'support',
      actorId: use.userId,
      action: 'support.request',
      tenantId: use.route.id,
      targetType: 'support_grant',
      targetId: use.grant.id,
      requestId: use.request.id,
      metadata,
    });
    // The tenant's own log lives in its placement: only reachable while the tenant is served.
    if (use.route.status !== 'active' || this.runtime.failedPlacements.has(use.route.id)) return;
    await this.audit.recordFor(
      use.route,
      { actorKind: 'support', actorId: use.userId, action: 'support.request', targetType: 'support_grant', targetId: use.grant.id, metadata },
      use.request,
    );
  }
}
