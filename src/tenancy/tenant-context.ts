import { Injectable } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';
import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import { PoolLease, tenantTransactionPrologue } from '../../libs/postgres/index.js';
import { SHARED_SCHEMA } from './placements.js';
import type { TenantAccess } from './tenant-route.js';
import { TenancyError } from './tenancy.errors.js';

type PgQueryRunner = Omit<QueryRunner, 'isTransactionActive'> & {
  isTransactionActive: boolean;
  databaseConnection: pg.PoolClient;
  transactionDepth: number;
  releasePostgresConnection(err?: Error | boolean): Promise<void>;
};

type Corkable = { cork(): void; uncork(): void };

/**
 * Holds a connection's writes until the event loop's next turn, so that what is queued on it
 * meanwhile (a prologue and the handler's first query; a COMMIT and the next request's
 * prologue) reaches PostgreSQL in one write and one wake-up of its backend.
 */
function corkForThisTurn(client: pg.PoolClient): void {
  const socket = (client as unknown as { connection?: { stream?: Partial<Corkable> } }).connection?.stream;
  if (typeof socket?.cork !== 'function' || typeof socket.uncork !== 'function') return;
  socket.cork();
  setImmediate(() => (socket as Corkable).uncork());
}

/**
 * One request's transaction on its tenant's placement: BEGIN and the transaction-local tenant
 * settings in one message, pipelined with the first query; ended with COMMIT or ROLLBACK; the
 * connection always goes back to its pool (destroyed if it may be unclean).
 */
export class TenantSession {
  private ended = false;
  private prologue!: Promise<unknown>;
  private readonly deferred: Array<{ sql: string; params: unknown[]; name?: string }> = [];

  private constructor(
    readonly access: TenantAccess,
    private readonly runner: PgQueryRunner,
    private readonly lease: PoolLease<DataSource>,
  ) {}

  get manager(): EntityManager {
    return this.runner.manager;
  }

  /**
   * A statement run just before COMMIT, pipelined with it, in this transaction: if it fails, the
   * whole transaction rolls back. Dropped if the transaction rolls back anyway.
   */
  deferUntilCommit(sql: string, params: unknown[], name?: string): void {
    if (this.access.readOnly) throw new Error('a read-only tenant transaction cannot defer a write');
    this.deferred.push({ sql, params, name });
  }

  static async begin(access: TenantAccess, lease: PoolLease<DataSource>): Promise<TenantSession> {
    // No search_path here: pools default to the shared schema (also every dedicated database's);
    // only schema-tier tenants switch it. Built before a connection is taken, so it cannot leak one.
    const prologue = tenantTransactionPrologue({
      organizationId: access.route.id,
      schema: access.route.placement.schema === SHARED_SCHEMA ? undefined : access.route.placement.schema,
      readOnly: access.readOnly,
      statementTimeoutMs: access.limits?.statementTimeoutMs,
    });
    const runner = lease.pool.createQueryRunner() as unknown as PgQueryRunner;
    let client: pg.PoolClient;
    try {
      client = await runner.connect();
    } catch (err) {
      lease.release();
      throw err;
    }
    const session = new TenantSession(access, runner, lease);
    // Not awaited: on a pipelined connection the handler's first query is written right behind
    // it, so opening the tenant transaction costs no round trip of its own. Should it fail, the
    // queries behind it run with no tenant set and RLS shows them nothing; commit() then refuses.
    corkForThisTurn(client);
    session.prologue = client.query(prologue);
    session.prologue.catch(() => undefined);
    // TypeORM must see the transaction as open so that save() and nested transactions use it.
    runner.isTransactionActive = true;
    runner.transactionDepth = 1;
    return session;
  }

  /**
   * Ends the transaction. A read-only transaction's COMMIT is not waited for: nothing depends on
   * its outcome, and whoever takes this connection next is queued behind it by pg, so no tenant
   * setting can reach their queries. A write waits for its COMMIT.
   */
  async commit(): Promise<void> {
    const client = this.runner.databaseConnection;
    try {
      await this.prologue;
      if (this.access.readOnly) {
        // Under load the next request takes this connection in the same turn: corked, its
        // prologue and query leave in the same write as this COMMIT.
        corkForThisTurn(client);
        client.query('COMMIT').catch(() => undefined);
      } else {
        // Statements deferred to the end (audit entries) travel in the same write as the COMMIT:
        // whatever they lock is held for no round trip of its own.
        corkForThisTurn(client);
        const deferred = this.deferred.map((d) => client.query({ name: d.name, text: d.sql, values: d.params }));
        deferred.forEach((q) => q.catch(() => undefined));
        // COMMIT of a transaction a caught error had aborted answers ROLLBACK, not an error.
        const { command } = await client.query('COMMIT');
        for (const q of deferred) await q;
        if (command !== 'COMMIT') throw new Error(`the tenant transaction was rolled back (${command}) instead of committed`);
      }
    } catch (err) {
      await this.finish(err as Error);
      throw err;
    }
    await this.finish();
  }

  /**
   * Rolls back. Returns the prologue's error when the transaction never opened properly (the
   * write gate refused it, say): that, not the "transaction is aborted" error the handler's
   * queries then got, is what the caller should hear.
   */
  async rollback(): Promise<Error | undefined> {
    let broken: Error | undefined;
    let prologueError: Error | undefined;
    try {
      await this.prologue.catch((err: Error) => {
        prologueError = err;
      });
      await this.runner.databaseConnection.query('ROLLBACK');
    } catch (err) {
      broken = err as Error;
    }
    await this.finish(broken);
    return prologueError;
  }

  /** Returns the connection; one that failed mid-transaction is destroyed rather than reused. */
  private async finish(err?: Error): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.runner.isTransactionActive = false;
    this.runner.transactionDepth = 0;
    try {
      // Synchronous underneath (pg-pool's release); not awaited, to spare the request a hop.
      void this.runner.releasePostgresConnection(err ?? false);
    } finally {
      this.lease.release();
    }
  }
}

/** What a tenant-scoped request runs with: who is in which tenant, and (on routes with one) its transaction. */
/** The HTTP request behind a tenant context, as audit entries record it. */
export interface RequestInfo {
  id: string;
  ip?: string;
  userAgent?: string;
}

export interface TenantContext {
  access: TenantAccess;
  session?: TenantSession;
  request?: RequestInfo;
}

/** The one home of the tenant context: set by the tenancy interceptors, read by TenantConnectionProvider. */
@Injectable()
export class TenantContextStore {
  private readonly als = new AsyncLocalStorage<TenantContext>();

  run<T>(context: TenantContext, fn: () => T): T {
    return this.als.run(context, fn);
  }

  require(): TenantContext {
    const c = this.als.getStore();
    if (!c) {
      throw new TenancyError('TENANT_CONTEXT_MISSING', 'no tenant context: this code must run inside a tenant-scoped request');
    }
    return c;
  }

  requireSession(): TenantSession {
    const s = this.require().session;
    if (!s) throw new TenancyError('TENANT_CONTEXT_MISSING', 'this route runs without a tenant transaction (TenantScoped({ transaction: false }))');
    return s;
  }
}
