import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type pg from 'pg';
import { DataSource, EntitySchema } from 'typeorm';
import type { AppConfig } from '../../config/configuration.js';
import { DatabaseServer, PoolLease, PoolRegistry } from '../../libs/postgres/index.js';
import { DATABASE_RUNTIME, DatabaseRuntime, SHARED_SCHEMA } from './placements.js';
import { TenancyError } from './tenancy.errors.js';
import type { Placement } from './tenant-route.js';

/** The pg pool under a TypeORM DataSource; its options.max is what pg-pool checks before it opens a connection. */
function pgPool(ds: DataSource): pg.Pool & { options: { max: number }; ending: boolean } {
  return (ds.driver as unknown as { master: pg.Pool & { options: { max: number }; ending: boolean } }).master;
}

// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export type EntityTarget = Function | EntitySchema;

/** Tenant-owned entities, registered by the modules that own them (TenancyModule.forFeature). */
@Injectable()
export class TenantEntityRegistry {
  readonly entities = new Set<EntityTarget>();
}

/**
 * One TypeORM DataSource (one pg pool, runtime role) per server and database, in a bounded
 * registry: shared and schema tenants share the primary database's pool; each dedicated
 * database gets an elastic pool of its own, closed least-recently-used first under the cap.
 */
@Injectable()
export class TenantPools implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(TenantPools.name);
  private readonly registry: PoolRegistry<DataSource>;
  private controlLease?: PoolLease<DataSource>;
  private readonly db: AppConfig['database'];

  constructor(
    @Inject(DATABASE_RUNTIME) private readonly runtime: DatabaseRuntime,
    config: ConfigService<AppConfig, true>,
    private readonly entities: TenantEntityRegistry,
  ) {
    this.db = config.get('database', { infer: true });
    this.registry = new PoolRegistry<DataSource>(
      { open: (key) => this.open(key), close: (ds) => ds.destroy() },
      { maxConnections: this.db.maxConnections, waitTimeoutMs: 5_000 },
    );
  }

  async onApplicationBootstrap(): Promise<void> {
    const p = this.runtime.primary;
    this.controlLease = await this.registry.lease(`${p.key}/${p.database}`, this.db.poolMax, true);
  }

  async onApplicationShutdown(): Promise<void> {
    this.controlLease?.release();
    await this.registry.closeAll();
  }

  /** The primary database's pool: control plane queries and the shared tier. */
  control(): DataSource {
    if (!this.controlLease) throw new Error('tenant pools are not started yet');
    return this.controlLease.pool;
  }

  /** A lease on the placement's pool: synchronous when the pool is open already (the common case). */
  lease(p: Placement): PoolLease<DataSource> | Promise<PoolLease<DataSource>> {
    const primary = p.serverKey === this.runtime.primary.key && p.database === this.runtime.primary.database;
    const key = `${p.serverKey}/${p.database}`;
    const open = this.registry.leaseOpen(key);
    if (open) {
      if (!primary) this.growIfSaturated(key, open.pool);
      return open;
    }
    if (primary) return this.registry.lease(key, this.db.poolMax, true);
    return this.registry.lease(key, 1).then((lease) => {
      this.growIfSaturated(key, lease.pool);
      return lease;
    });
  }

  /**
   * Dedicated pools start with one connection's worth of budget and take one more from the
   * global cap each time every connection they have is busy, up to DB_DEDICATED_POOL_MAX; a
   * connection closed for idleness gives its budget back. So many dedicated tenants share the
   * cap by what they use, not by what they might use.
   */
  private growIfSaturated(key: string, ds: DataSource): void {
    const pool = pgPool(ds);
    if (pool.idleCount > 0 || pool.totalCount < pool.options.max || pool.options.max >= this.db.dedicatedPoolMax) return;
    if (this.registry.grow(key, ds)) pool.options.max++;
  }

  stats() {
    return this.registry.stats();
  }

  private async open(key: string): Promise<DataSource> {
    const [serverKey, database] = key.split('/');
    const server: DatabaseServer | undefined = this.runtime.servers.get(serverKey);
    if (!server) {
      // A tenant placed on a server this instance has no configuration for: unavailable, not a crash.
      throw new TenancyError('TENANT_UNAVAILABLE', 'the database of this tenant is not reachable from this instance; retry later', undefined, { 'retry-after': '30' });
    }
    const primary = serverKey === this.runtime.primary.key && database === this.runtime.primary.database;
    const ds = new DataSource({
      type: 'postgres',
      host: server.host,
      port: server.port,
      username: server.appUser,
      password: server.appPassword,
      database,
      entities: [...this.entities.entities],
      synchronize: false,
      installExtensions: false,
      logging: false,
      applicationName: 'tenancy-app',
      extra: {
        // Pipelining lets a request's tenant prologue travel with its first query, and a read's
        // COMMIT with the next request: pg still runs each connection's queries strictly in order.
        pipeline: true,
        max: primary ? this.db.poolMax : 1,
        idleTimeoutMillis: this.db.poolIdleMs,
        connectionTimeoutMillis: 5_000,
        options: `-c search_path=${SHARED_SCHEMA}`,
        // Every client always has an error listener: a backend killed just as pg-pool hands the
        // client out (before TypeORM attaches its own) must fail that request, not the process.
        onConnect: (client: pg.PoolClient) => void client.on('error', () => undefined),
      },
    });
    await ds.initialize();
    if (!primary) {
      const pool = pgPool(ds);
      pool.on('remove', () => {
        if (pool.options.max > 1 && !pool.ending) {
          pool.options.max--;
          this.registry.shrink(key, ds);
        }
      });
    }
    this.logger.debug(`opened pool ${key}`);
    return ds;
  }
}
