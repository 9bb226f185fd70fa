import { Controller, Get, Inject, OnApplicationShutdown } from '@nestjs/common';
import { ApiOkResponse, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import pg from 'pg';
import { Public } from '../auth/auth-user.js';
import { DATABASE_RUNTIME, DatabaseRuntime } from '../tenancy/placements.js';
import { RoutingTable } from '../tenancy/routing-table.service.js';

/** Readiness pings every registered database server as the runtime role; liveness only says the process answers. */
@ApiTags('health')
@Public()
@Controller('health')
export class HealthController implements OnApplicationShutdown {
  private readonly pings: Array<{ key: string; pool: pg.Pool }>;

  constructor(
    private readonly health: HealthCheckService,
    private readonly indicator: HealthIndicatorService,
    private readonly routing: RoutingTable,
    @Inject(DATABASE_RUNTIME) runtime: DatabaseRuntime,
  ) {
    this.pings = [...runtime.servers.values()].map((s) => {
      const pool = new pg.Pool({
        host: s.host,
        port: s.port,
        user: s.appUser,
        password: s.appPassword,
        database: s.database,
        max: 1,
        idleTimeoutMillis: 10_000,
        connectionTimeoutMillis: 2_000,
        application_name: 'tenancy-health',
      });
      pool.on('error', () => undefined);
      return { key: s.key, pool };
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all(this.pings.map((p) => p.pool.end().catch(() => undefined)));
  }

  @Get()
  @HealthCheck()
  @ApiOkResponse({ description: 'Every database server answers' })
  @ApiServiceUnavailableResponse({ description: 'At least one database server does not answer' })
  ready() {
    return this.health.check([
      ...this.pings.map(({ key, pool }) => () =>
        this.indicator
          .check(`db:${key}`)
          .attempt(async () => void (await pool.query('SELECT 1')))
          .withTimeout(3_000),
      ),
      () => (this.routing.isListening() ? this.indicator.check('routing-cache').up() : this.indicator.check('routing-cache').down('listener reconnecting')),
    ]);
  }

  @Get('live')
  @ApiOkResponse({ description: 'The process is up' })
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }
}
