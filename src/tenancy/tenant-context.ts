import { Injectable } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';
import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import { PoolLease, tenantTransactionPrologue } from '../../libs/postgres/index.js';
import type { TenantAccess } from './tenant-route.js';
import { TenancyError } from './tenancy.errors.js';

type PgQueryRunner = Omit<QueryRunner, 'isTransactionActive'> & {
  isTransactionActive: boolean;
  databaseConnection: pg.PoolClient;
  transactionDepth: number;
  releasePostgresConnection(err?: Error | boolean): Promise<void>;
};

/**
 * One request's transaction on its tenant's placement. Opened with one round trip
 * (BEGIN + transaction-local tenant settings), ended with COMMIT or ROLLBACK, and the
 * connection always goes back to its pool (destroyed if it may be unclean).
 */
export class TenantSession {
  private ended = false;

  private constructor(
    readonly access: TenantAccess,
    private readonly runner: PgQueryRunner,
    private readonly lease: PoolLease<DataSource>,
  ) {}

  get manager(): EntityManager {
    return this.runner.manager;
  }

  static async begin(access: TenantAccess, lease: PoolLease<DataSource>): Promise<TenantSession> {
    const runner = lease.pool.createQueryRunner() as unknown as PgQueryRunner;
    let client: pg.PoolClient;
    try {
      client = await runner.connect();
    } catch (err) {
      lease.release();
      throw err;
    }
    const session = new TenantSession(access, runner, lease);
    try {
      await client.query(
        tenantTransactionPrologue({
          organizationId: access.route.id,
          schema: access.route.placement.schema,
          readOnly: access.readOnly,
        }),
      );
    } catch (err) {
      await session.finish(err as Error);
      throw err;
    }
    // TypeORM must see the transaction as open so that save() and nested transactions use it.
    runner.isTransactionActive = true;
    runner.transactionDepth = 1;
    return session;
  }

  async commit(): Promise<void> {
    try {
      await this.runner.databaseConnection.query('COMMIT');
    } catch (err) {
      await this.finish(err as Error);
      throw err;
    }
    await this.finish();
  }

  async rollback(): Promise<void> {
    let broken: Error | undefined;
    try {
      await this.runner.databaseConnection.query('ROLLBACK');
    } catch (err) {
      broken = err as Error;
    }
    await this.finish(broken);
  }

  /** Returns the connection; one that failed mid-transaction is destroyed rather than reused. */
  private async finish(err?: Error): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.runner.isTransactionActive = false;
    this.runner.transactionDepth = 0;
    try {
      await this.runner.releasePostgresConnection(err ?? false);
    } finally {
      this.lease.release();
    }
  }
}

/** The one home of the tenant context: set by the transaction interceptor, read by TenantConnectionProvider. */
@Injectable()
export class TenantContextStore {
  private readonly als = new AsyncLocalStorage<TenantSession>();

  run<T>(session: TenantSession, fn: () => T): T {
    return this.als.run(session, fn);
  }

  current(): TenantSession | undefined {
    return this.als.getStore();
  }

  require(): TenantSession {
    const s = this.als.getStore();
    if (!s) {
      throw new TenancyError('TENANT_CONTEXT_MISSING', 'no tenant context: this code must run inside a tenant-scoped request');
    }
    return s;
  }
}
