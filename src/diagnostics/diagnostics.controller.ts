import { Controller, Get, Query, UseGuards } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, Max, Min } from 'class-validator';
import { PlatformAdminGuard } from '../auth/platform-admin.guard.js';
import { TenantBulkhead, TenantLimitCounters } from '../tenancy/bulkhead.js';
import { TenantConnectionProvider } from '../tenancy/tenant-connection.provider.js';
import { TenantScoped } from '../tenancy/tenant-scoped.decorator.js';

/** Longest sleep the route accepts: past every plan's statement timeout, short of tying a connection up for long. */
export const MAX_SLEEP_MS = 60_000;

export class SleepQuery {
  @Type(() => Number)
  @IsInt({ message: 'ms must be a whole number of milliseconds' })
  @Min(0)
  @Max(MAX_SLEEP_MS)
  ms!: number;
}

export interface SleepDto {
  /** How long the query took, as the app saw it. */
  tookMs: number;
}

export interface LimitCountersDto {
  throttledTenant: number;
  throttledUser: number;
  bulkheadWaits: number;
  bulkheadRejections: number;
  statementTimeouts: number;
  /** Bulkhead slots held and requests waiting, by tenant id (only tenants with either). */
  inUse: Record<string, { active: number; waiting: number }>;
}

/**
 * TEST ONLY (registered when TEST_ROUTES_ENABLED=true, refused in production; hidden from
 * Swagger): a tenant request that holds its connection in a slow query, to show the plan's
 * statement timeout and the concurrency cap at work, and to drive the noisy-neighbour bench.
 */
@ApiExcludeController()
@TenantScoped()
@Controller('orgs/:slug/_diagnostics')
export class TenantDiagnosticsController {
  constructor(private readonly tenant: TenantConnectionProvider) {}

  /** SELECT pg_sleep(ms / 1000) in the tenant's transaction. */
  @Get('sleep')
  async sleep(@Query() q: SleepQuery): Promise<SleepDto> {
    const started = performance.now();
    await this.tenant.manager.query('SELECT pg_sleep($1)', [q.ms / 1000]);
    return { tookMs: Math.round(performance.now() - started) };
  }
}

/** TEST ONLY: the per-tenant limit counters of this instance (platform admins). */
@ApiExcludeController()
@UseGuards(PlatformAdminGuard)
@Controller('_diagnostics')
export class DiagnosticsController {
  constructor(
    private readonly counters: TenantLimitCounters,
    private readonly bulkhead: TenantBulkhead,
  ) {}

  @Get('limits')
  limits(): LimitCountersDto {
    const c = this.counters;
    return {
      throttledTenant: c.throttledTenant,
      throttledUser: c.throttledUser,
      bulkheadWaits: c.bulkheadWaits,
      bulkheadRejections: c.bulkheadRejections,
      statementTimeouts: c.statementTimeouts,
      inUse: Object.fromEntries(this.bulkhead.inUse()),
    };
  }
}
