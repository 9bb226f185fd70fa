import { hostname } from 'node:os';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { v7 as uuidv7 } from 'uuid';
import { quoteIdent, uuidLiteral } from '../../libs/postgres/index.js';
import { assertPlanIncludesTier } from '../billing/plan-assignment.js';
import { assertPlacementAllowed, CONTROL_SCHEMA, DatabaseRuntime, dropPlacement, placementFor, preparePlacement, serverOf } from '../tenancy/placements.js';
import type { Placement, TenantStatus, Tier } from '../tenancy/tenant-route.js';
import { TenancyError } from '../tenancy/tenancy.errors.js';
import { LifecycleError } from './lifecycle.errors.js';
import type { Actor } from './actor.js';
import { recordPlatformEvent } from './platform-audit.js';
import { appliedMigrations, columnList, connectToTenant, deleteTenantRows, fingerprint, TableFingerprint, TenantTable, tenantTables } from './tenant-data.js';

/**
 * A tenant's move between placements (shared <-> schema <-> dedicated, and between servers),
 * verified and without losing a write:
 *
 *   pending -> preparing -> copying -> catching_up -> frozen -> verifying -> flipped -> cleaned
 *                      (any phase before flipped) -> aborted (asked) | failed (verification)
 *
 * Copy: keyset batches streamed with COPY from the source into the target, each batch committed,
 * so the target's own rows are the checkpoint a resumed move continues from. Catch-up: a
 * row-by-row diff of both sides (key and MD5 of each row, merged in key order), applied first
 * while the tenant is fully live and once more during a short write freeze. This was chosen over
 * a final delta "by updated_at" (misses deletes, trusts every writer to maintain the column)
 * and over logical replication (needs wal_level=logical and replication privileges on every
 * server, a restart to turn on, and cannot filter a schema tier inside one database cleanly).
 *
 * Freeze: the mover holds an exclusive advisory lock keyed by the tenant on the source; every
 * write transaction of the app takes it shared with try-lock in its prologue (tenant_write_gate),
 * so writes get 503 at once while reads go on; the lock waits only for writes already under way.
 * Then: verify counts and order-independent checksums of every table on both sides, fence the
 * source (a row in tenant_fences makes the gate refuse writes there for good, even from an app
 * instance that has not yet heard of the move), flip the routing table in one transaction (its
 * trigger notifies every app instance), and lift the freeze. A crash before the flip leaves the
 * tenant on its source (the advisory lock dies with the session; a fence left behind is lifted
 * by resume, abort or the sweeper); the move can be resumed or aborted.
 */

export const MOVE_PHASES = ['pending', 'preparing', 'copying', 'catching_up', 'frozen', 'verifying', 'flipped', 'cleaned', 'aborted', 'failed'] as const;
export type MovePhase = (typeof MOVE_PHASES)[number];
/** Phases before the flip: the tenant still serves from its source, and the move can be resumed or aborted. */
const BEFORE_FLIP: readonly MovePhase[] = ['pending', 'preparing', 'copying', 'catching_up', 'frozen', 'verifying'];
const FINISHED: readonly MovePhase[] = ['cleaned', 'aborted', 'failed'];
const FREEZE_ATTEMPTS = 3;
/** Hash buckets per table for comparing both sides (a power of two). */
const BUCKETS = 1024;
const UPSERT_CHUNK = 5_000;

interface Bucket {
  rows: bigint;
  checksum: bigint;
}

export interface TableProgress {
  rows: number;
  copied: number;
}

export interface TableVerification {
  source: TableFingerprint;
  target: TableFingerprint;
  ok: boolean;
}

export interface Verification {
  ok: boolean;
  at: string;
  tables: Record<string, TableVerification>;
}

export interface MoveRecord {
  id: string;
  tenantId: string;
  phase: MovePhase;
  source: Placement;
  target: Placement;
  tables: Record<string, TableProgress>;
  rowsTotal: number;
  rowsCopied: number;
  verification: Verification | null;
  freezeMs: number | null;
  error: string | null;
  requestedBy: string;
  runner: string | null;
  abortRequestedAt: Date | null;
  cleanupAfter: Date | null;
  createdAt: Date;
  updatedAt: Date;
  flippedAt: Date | null;
  finishedAt: Date | null;
}

interface MoveRow {
  id: string;
  tenant_id: string;
  phase: MovePhase;
  source_tier: Tier;
  source_server: string;
  source_database: string;
  source_schema: string;
  target_tier: Tier;
  target_server: string;
  target_database: string;
  target_schema: string;
  progress: Record<string, TableProgress>;
  rows_total: string;
  rows_copied: string;
  verification: Verification | null;
  freeze_ms: number | null;
  error: string | null;
  requested_by: string;
  runner: string | null;
  abort_requested_at: Date | null;
  cleanup_after: Date | null;
  created_at: Date;
  updated_at: Date;
  flipped_at: Date | null;
  finished_at: Date | null;
}

function toRecord(r: MoveRow): MoveRecord {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    phase: r.phase,
    source: { tier: r.source_tier, serverKey: r.source_server, database: r.source_database, schema: r.source_schema },
    target: { tier: r.target_tier, serverKey: r.target_server, database: r.target_database, schema: r.target_schema },
    tables: r.progress,
    rowsTotal: Number(r.rows_total),
    rowsCopied: Number(r.rows_copied),
    verification: r.verification,
    freezeMs: r.freeze_ms,
    error: r.error,
    requestedBy: r.requested_by,
    runner: r.runner,
    abortRequestedAt: r.abort_requested_at,
    cleanupAfter: r.cleanup_after,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    flippedAt: r.flipped_at,
    finishedAt: r.finished_at,
  };
}

export function isBeforeFlip(phase: MovePhase): boolean {
  return BEFORE_FLIP.includes(phase);
}

export function isFinished(phase: MovePhase): boolean {
  return FINISHED.includes(phase);
}

function samePlacement(a: Placement, b: Placement): boolean {
  return a.tier === b.tier && a.serverKey === b.serverKey && a.database === b.database && a.schema === b.schema;
}

export function describePlacement(p: Placement): string {
  return p.tier === 'schema' ? `schema ${p.schema} on ${p.serverKey}` : p.tier === 'dedicated' ? `database ${p.database} on ${p.serverKey}` : `shared on ${p.serverKey}`;
}

export interface MoveEngineOptions {
  batchRows: number;
  freezeWaitMs: number;
  cleanupDelaySeconds: number;
  /** Structured log of what happens (never row data). */
  log?: (fields: Record<string, unknown>, message: string) => void;
}

export interface RunOptions {
  /** Aborting it stops the run at its next step; the reason 'abort' also rolls the move back. */
  signal?: AbortSignal;
  onProgress?: (move: MoveRecord) => void;
}

/** Why a run stopped early without an error of its own. */
class RunStopped extends Error {
  constructor(readonly rollBack: boolean, why: string) {
    super(why);
  }
}

class VerificationFailed extends Error {
  constructor(readonly verification: Verification) {
    const bad = Object.entries(verification.tables)
      .filter(([, t]) => !t.ok)
      .map(([name, t]) => `${name}: ${t.source.rows} rows/${t.source.checksum} at the source, ${t.target.rows}/${t.target.checksum} at the target`);
    super(`verification failed (${bad.join('; ')})`);
  }
}

const RUNNER_ID = `${hostname()}:${process.pid}`;

function moveLockKey(moveId: string): string {
  return `tenant-move:${moveId}`;
}

/**
 * The lines of a COPY TO STDOUT (text format) as arrays of fields, pulled one at a time, so that
 * two of them can be merged in key order with flat memory (each stream is paused while unread).
 */
function copyLines(stream: Readable): { next(): Promise<IteratorResult<string[]>> } {
  stream.setEncoding('utf8');
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<string>;
  let rest = '';
  let ready: string[] = [];
  let at = 0;
  let ended = false;
  return {
    async next() {
      while (at === ready.length && !ended) {
        const chunk = await chunks.next();
        if (chunk.done) {
          ended = true;
          ready = rest ? [rest] : [];
        } else {
          ready = (rest + chunk.value).split('\n');
          rest = ready.pop()!;
        }
        at = 0;
      }
      return at < ready.length ? { done: false, value: ready[at++].split('\t') } : { done: true, value: undefined };
    },
  };
}

/**
 * Runs moves. Bookkeeping goes through its own small owner-role pool on the control plane, so the
 * same engine serves the API (in the app) and the operators' CLI (in its own process).
 */
export class MoveEngine {
  private control?: pg.Pool;

  constructor(
    private readonly runtime: DatabaseRuntime,
    private readonly options: MoveEngineOptions,
  ) {}

  async close(): Promise<void> {
    await this.control?.end();
    this.control = undefined;
  }

  private pool(): pg.Pool {
    if (!this.control) {
      const p = this.runtime.primary;
      this.control = new pg.Pool({
        host: p.host,
        port: p.port,
        user: p.ownerUser,
        password: p.ownerPassword,
        database: p.database,
        max: 3,
        application_name: 'tenancy-move-control',
        idleTimeoutMillis: 10_000,
      });
      this.control.on('error', () => undefined);
    }
    return this.control;
  }

  private async controlTx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool().connect();
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  private log(fields: Record<string, unknown>, message: string): void {
    this.options.log?.(fields, message);
  }

  private async audit(q: pg.ClientBase, actor: Actor, action: string, move: { id: string; tenantId: string }, metadata: Record<string, unknown>): Promise<void> {
    await recordPlatformEvent(
      { query: async <T>(sql: string, params?: unknown[]) => (await q.query(sql, params)).rows as T },
      { actorKind: actor.kind, actorId: actor.id, action, tenantId: move.tenantId, targetType: 'tenant_move', targetId: move.id, metadata, requestId: actor.requestId },
    );
  }

  async get(moveId: string, tenantId?: string): Promise<MoveRecord> {
    const { rows } = await this.pool().query<MoveRow>(
      `SELECT * FROM ${CONTROL_SCHEMA}.tenant_moves WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2::uuid)`,
      [moveId, tenantId ?? null],
    );
    if (!rows.length) throw new LifecycleError('MOVE_NOT_FOUND', `move ${moveId} was not found`, 'moveId');
    return toRecord(rows[0]);
  }

  async list(tenantId: string, limit = 50): Promise<MoveRecord[]> {
    const { rows } = await this.pool().query<MoveRow>(
      `SELECT * FROM ${CONTROL_SCHEMA}.tenant_moves WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`,
      [tenantId, limit],
    );
    return rows.map(toRecord);
  }

  /** Whether some process is running this move now (it holds the move's advisory lock). */
  async isRunning(moveId: string): Promise<boolean> {
    const c = await this.pool().connect();
    try {
      const { rows } = await c.query<{ free: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS free', [moveLockKey(moveId)]);
      if (rows[0].free) await c.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [moveLockKey(moveId)]);
      return !rows[0].free;
    } finally {
      c.release();
    }
  }

  /**
   * Records a move of a tenant to a tier (and server), if the tenant's plan includes that tier
   * (`ignorePlan`: an operator's override, said in the move's audit entry). A previous move still
   * waiting for its clean-up is cleaned up first: its source is dead since its flip.
   */
  async create(tenantId: string, to: { tier: Tier; server?: string }, actor: Actor, opts: { ignorePlan?: boolean } = {}): Promise<MoveRecord> {
    assertPlacementAllowed(this.runtime, to.tier, to.server);
    const waiting = await this.pool().query<{ id: string }>(
      `SELECT id FROM ${CONTROL_SCHEMA}.tenant_moves WHERE tenant_id = $1 AND phase = 'flipped'`,
      [tenantId],
    );
    for (const w of waiting.rows) await this.cleanup(w.id, actor);

    return this.controlTx(async (c) => {
      const t = await c.query<{ status: TenantStatus; tier: Tier; server_key: string; database_name: string; schema_name: string; slug: string }>(
        `SELECT status, tier, server_key, database_name, schema_name, slug FROM ${CONTROL_SCHEMA}.tenants WHERE id = $1 FOR UPDATE`,
        [tenantId],
      );
      if (!t.rows.length) throw new TenancyError('TENANT_NOT_FOUND', `tenant ${tenantId} was not found`, 'id');
      const tenant = t.rows[0];
      if (tenant.status !== 'active' && tenant.status !== 'suspended') {
        throw new LifecycleError('TENANT_STATE_CONFLICT', `tenant '${tenant.slug}' is ${tenant.status}; only active or suspended tenants can be moved`);
      }
      if (!opts.ignorePlan) await assertPlanIncludesTier({ query: async (sql, params) => (await c.query(sql, params)).rows as never }, tenantId, to.tier);
      const source: Placement = { tier: tenant.tier, serverKey: tenant.server_key, database: tenant.database_name, schema: tenant.schema_name };
      const target = placementFor(this.runtime, tenantId, to.tier, to.server);
      if (samePlacement(source, target)) {
        throw new LifecycleError('MOVE_SAME_PLACEMENT', `tenant '${tenant.slug}' already lives there (${describePlacement(source)})`, 'tier');
      }
      const open = await c.query<{ id: string; phase: MovePhase }>(
        `SELECT id, phase FROM ${CONTROL_SCHEMA}.tenant_moves WHERE tenant_id = $1 AND phase NOT IN ('cleaned', 'aborted', 'failed')`,
        [tenantId],
      );
      if (open.rows.length) {
        throw new LifecycleError('MOVE_IN_PROGRESS', `tenant '${tenant.slug}' has a move in progress (${open.rows[0].id}, ${open.rows[0].phase}); resume or abort it first`);
      }
      const id = uuidv7();
      const { rows } = await c.query<MoveRow>(
        `INSERT INTO ${CONTROL_SCHEMA}.tenant_moves
           (id, tenant_id, phase, source_tier, source_server, source_database, source_schema,
            target_tier, target_server, target_database, target_schema, requested_by)
         VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *`,
        [id, tenantId, source.tier, source.serverKey, source.database, source.schema, target.tier, target.serverKey, target.database, target.schema, `${actor.kind}:${actor.id ?? 'unknown'}`],
      );
      await this.audit(c, actor, 'tenant.move_requested', { id, tenantId }, { from: source, to: target, ...(opts.ignorePlan ? { planChecked: false } : {}) });
      return toRecord(rows[0]);
    });
  }

  /**
   * Runs (or resumes) a move up to its flip, and its clean-up too when no delay is configured.
   * Only one process runs a move at a time: it holds the move's advisory lock on the control plane.
   */
  async run(moveId: string, options: RunOptions = {}): Promise<MoveRecord> {
    const p = this.runtime.primary;
    const lock = new pg.Client({
      host: p.host,
      port: p.port,
      user: p.ownerUser,
      password: p.ownerPassword,
      database: p.database,
      application_name: 'tenancy-move-runner',
      keepAlive: true,
    });
    lock.on('error', () => undefined);
    await lock.connect();
    try {
      const { rows } = await lock.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok', [moveLockKey(moveId)]);
      if (!rows[0].ok) throw new LifecycleError('MOVE_IN_PROGRESS', `move ${moveId} is being run by another process`);
      const claimed = await lock.query<MoveRow>(
        `UPDATE ${CONTROL_SCHEMA}.tenant_moves SET runner = $2, heartbeat_at = now(), updated_at = now(), error = NULL
          WHERE id = $1 AND phase = ANY ($3) RETURNING *`,
        [moveId, RUNNER_ID, BEFORE_FLIP],
      );
      if (!claimed.rows.length) {
        const move = await this.get(moveId);
        if (move.phase === 'flipped' && this.options.cleanupDelaySeconds === 0) return this.cleanup(moveId, { kind: 'system', id: RUNNER_ID });
        if (move.phase === 'flipped' || isFinished(move.phase)) return move;
        throw new LifecycleError('MOVE_STATE_CONFLICT', `move ${moveId} cannot run in phase ${move.phase}`);
      }
      const run = new MoveRun(this, this.runtime, this.options, toRecord(claimed.rows[0]), lock, options);
      const moved = await run.execute();
      if (moved.phase === 'flipped' && this.options.cleanupDelaySeconds === 0) {
        await lock.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [moveLockKey(moveId)]);
        return this.cleanup(moveId, { kind: 'system', id: RUNNER_ID });
      }
      return moved;
    } finally {
      // Ending the session releases the move's lock (and any freeze lock the run may hold elsewhere is its own session's).
      await lock.end().catch(() => undefined);
    }
  }

  /**
   * Aborts a move before its flip: the target is removed, a fence left on the source is lifted,
   * the tenant stays where it was. A move running in another process is asked to stop and does
   * its own roll-back at its next step.
   */
  async abort(moveId: string, actor: Actor, tenantId?: string): Promise<MoveRecord> {
    const move = await this.get(moveId, tenantId);
    if (!isBeforeFlip(move.phase)) {
      throw new LifecycleError('MOVE_STATE_CONFLICT', `move ${moveId} is ${move.phase}; only a move before its flip can be aborted`);
    }
    const c = await this.pool().connect();
    try {
      const { rows } = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok', [moveLockKey(moveId)]);
      if (!rows[0].ok) {
        await c.query(`UPDATE ${CONTROL_SCHEMA}.tenant_moves SET abort_requested_at = now(), updated_at = now() WHERE id = $1 AND abort_requested_at IS NULL`, [moveId]);
        await this.audit(c, actor, 'tenant.move_abort_requested', move, {});
        return this.get(moveId);
      }
      try {
        const current = await this.get(moveId);
        if (!isBeforeFlip(current.phase)) {
          throw new LifecycleError('MOVE_STATE_CONFLICT', `move ${moveId} is ${current.phase}; only a move before its flip can be aborted`);
        }
        return await this.rollBack(current, 'aborted', 'aborted by request', actor);
      } finally {
        await c.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [moveLockKey(moveId)]).catch(() => undefined);
      }
    } finally {
      c.release();
    }
  }

  /** Removes the target (and a source fence), and closes the move as aborted or failed. */
  async rollBack(move: MoveRecord, phase: 'aborted' | 'failed', reason: string, actor: Actor, verification?: Verification): Promise<MoveRecord> {
    await this.liftFence(move.source, move.tenantId);
    const removed = await this.removeTenantData(move.target, move.tenantId);
    return this.controlTx(async (c) => {
      const { rows } = await c.query<MoveRow>(
        `UPDATE ${CONTROL_SCHEMA}.tenant_moves SET phase = $2, error = $3, runner = NULL, finished_at = now(), updated_at = now(),
                verification = coalesce($4, verification)
          WHERE id = $1 RETURNING *`,
        [move.id, phase, reason, verification ? JSON.stringify(verification) : null],
      );
      await this.audit(c, actor, phase === 'aborted' ? 'tenant.move_aborted' : 'tenant.move_failed', move, { reason, targetRemoved: removed });
      this.log({ moveId: move.id, tenantId: move.tenantId, phase }, `move ${phase}: ${reason}`);
      return toRecord(rows[0]);
    });
  }

  /** Cleans up the source of a flipped move: rows deleted from a shared placement, a schema or database dropped. */
  async cleanup(moveId: string, actor: Actor): Promise<MoveRecord> {
    const move = await this.get(moveId);
    if (move.phase === 'cleaned') return move;
    if (move.phase !== 'flipped') throw new LifecycleError('MOVE_STATE_CONFLICT', `move ${moveId} is ${move.phase}; only a flipped move has a source to clean up`);
    const current = await this.pool().query<{ tier: Tier; server_key: string; database_name: string; schema_name: string }>(
      `SELECT tier, server_key, database_name, schema_name FROM ${CONTROL_SCHEMA}.tenants WHERE id = $1`,
      [move.tenantId],
    );
    const now = current.rows[0];
    if (now && samePlacement(move.source, { tier: now.tier, serverKey: now.server_key, database: now.database_name, schema: now.schema_name })) {
      throw new LifecycleError('MOVE_STATE_CONFLICT', `the tenant is routed to this move's source again; refusing to clean it up`);
    }
    const removed = await this.removeTenantData(move.source, move.tenantId);
    return this.controlTx(async (c) => {
      const { rows } = await c.query<MoveRow>(
        `UPDATE ${CONTROL_SCHEMA}.tenant_moves SET phase = 'cleaned', finished_at = now(), updated_at = now()
          WHERE id = $1 AND phase = 'flipped' RETURNING *`,
        [moveId],
      );
      if (!rows.length) return this.get(moveId);
      await this.audit(c, actor, 'tenant.move_cleaned', move, { source: move.source, removed });
      this.log({ moveId, tenantId: move.tenantId }, `move source cleaned up (${describePlacement(move.source)})`);
      return toRecord(rows[0]);
    });
  }

  /** Clean-ups whose delay has passed (the sweeper's step). Returns how many were cleaned. */
  async cleanupDue(actor: Actor = { kind: 'system', id: 'sweeper' }): Promise<number> {
    const { rows } = await this.pool().query<{ id: string }>(
      `SELECT id FROM ${CONTROL_SCHEMA}.tenant_moves WHERE phase = 'flipped' AND cleanup_after <= now() ORDER BY cleanup_after LIMIT 100`,
    );
    let done = 0;
    for (const r of rows) {
      if (await this.isRunning(r.id)) continue;
      try {
        await this.cleanup(r.id, actor);
        done++;
      } catch (err) {
        this.log({ moveId: r.id, reason: (err as Error).message }, 'move clean-up failed; retried at the next sweep');
      }
    }
    return done;
  }

  /**
   * Moves whose runner died during the cutover may have left a fence on the source (the tenant
   * would refuse writes): lift it, and put the move back to catching up so it can be resumed.
   */
  async recoverInterrupted(actor: Actor = { kind: 'system', id: 'sweeper' }): Promise<number> {
    const { rows } = await this.pool().query<MoveRow>(`SELECT * FROM ${CONTROL_SCHEMA}.tenant_moves WHERE phase IN ('frozen', 'verifying')`);
    let recovered = 0;
    for (const r of rows) {
      const c = await this.pool().connect();
      try {
        const { rows: got } = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok', [moveLockKey(r.id)]);
        if (!got[0].ok) continue;
        try {
          const moved = await c.query(
            `UPDATE ${CONTROL_SCHEMA}.tenant_moves SET phase = 'catching_up', runner = NULL, updated_at = now(),
                    error = 'interrupted during the cutover; the freeze was lifted and the tenant serves from its source'
              WHERE id = $1 AND phase IN ('frozen', 'verifying')`,
            [r.id],
          );
          if (moved.rowCount) {
            await this.liftFence(toRecord(r).source, r.tenant_id);
            await this.audit(c, actor, 'tenant.move_interrupted', { id: r.id, tenantId: r.tenant_id }, { phase: r.phase });
            recovered++;
          }
        } finally {
          await c.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [moveLockKey(r.id)]);
        }
      } finally {
        c.release();
      }
    }
    return recovered;
  }

  /** Removes a fence this tenant may have on a placement. */
  async liftFence(placement: Placement, tenantId: string): Promise<void> {
    if (!this.runtime.servers.has(placement.serverKey)) return;
    let client: pg.Client;
    try {
      client = await connectToTenant(this.runtime, placement, tenantId, 'tenancy-move');
    } catch (err) {
      if ((err as { code?: string }).code === '3D000') return; // the database is gone: nothing to lift
      throw err;
    }
    try {
      await client.query('DELETE FROM tenant_fences').catch((err: { code?: string }) => {
        if (err.code !== '42P01') throw err; // no such schema or table any more: nothing to lift
      });
    } finally {
      await client.end();
    }
  }

  /**
   * Removes one tenant's data from one placement: its rows (children first, through a connection
   * that RLS confines to that tenant) from a shared placement; its schema or database otherwise.
   * Returns the rows removed per table. Idempotent.
   */
  async removeTenantData(placement: Placement, tenantId: string): Promise<Record<string, number>> {
    const removed: Record<string, number> = {};
    serverOf(this.runtime, placement.serverKey);
    let client: pg.Client;
    try {
      client = await connectToTenant(this.runtime, placement, tenantId, 'tenancy-move');
    } catch (err) {
      if ((err as { code?: string }).code === '3D000') return removed; // database already dropped
      throw err;
    }
    try {
      const exists = await client.query<{ s: string | null }>(`SELECT to_regnamespace($1)::text AS s`, [placement.schema]);
      if (!exists.rows[0].s) return removed;
      if (placement.tier === 'shared') {
        for (const r of await deleteTenantRows(client, tenantId)) removed[r.name] = r.rowsRemoved;
        return removed;
      }
      const tables = await tenantTables(client);
      for (const t of tables) removed[t.name] = (await fingerprint(client, t, tenantId)).rows;
    } finally {
      await client.end();
    }
    await dropPlacement(this.runtime, placement, tenantId);
    return removed;
  }

  // Used by MoveRun.
  async update(client: pg.ClientBase, moveId: string, set: Record<string, unknown>): Promise<MoveRecord & { abortRequested: boolean }> {
    const keys = Object.keys(set);
    const assignments = keys.map((k, i) => `${quoteIdent(k)} = $${i + 2}`).join(', ');
    const { rows } = await client.query<MoveRow>(
      `UPDATE ${CONTROL_SCHEMA}.tenant_moves SET ${assignments}${keys.length ? ',' : ''} heartbeat_at = now(), updated_at = now()
        WHERE id = $1 RETURNING *`,
      [moveId, ...keys.map((k) => (set[k] !== null && typeof set[k] === 'object' && !(set[k] instanceof Date) ? JSON.stringify(set[k]) : set[k]))],
    );
    return { ...toRecord(rows[0]), abortRequested: rows[0].abort_requested_at !== null };
  }

  async auditWith(client: pg.ClientBase, actor: Actor, action: string, move: { id: string; tenantId: string }, metadata: Record<string, unknown>): Promise<void> {
    await this.audit(client, actor, action, move, metadata);
  }
}

/** One run of one move, holding the move's lock (on `control`) from start to end. */
class MoveRun {
  private src!: pg.Client;
  private dst!: pg.Client;
  private tables: TenantTable[] = [];
  private readonly actor: Actor = { kind: 'system', id: RUNNER_ID };

  constructor(
    private readonly engine: MoveEngine,
    private readonly runtime: DatabaseRuntime,
    private readonly options: MoveEngineOptions,
    private move: MoveRecord,
    private readonly control: pg.Client,
    private readonly run: RunOptions,
  ) {}

  private get tenantId(): string {
    return this.move.tenantId;
  }

  async execute(): Promise<MoveRecord> {
    try {
      if (this.move.phase === 'frozen' || this.move.phase === 'verifying') {
        // A runner died during the cutover: the freeze died with it; a fence may be left.
        await this.engine.liftFence(this.move.source, this.tenantId);
        await this.set({ phase: 'catching_up' });
      }
      await this.step(this.move.phase === 'pending' ? 'preparing' : this.move.phase);
      await preparePlacement(this.runtime, this.move.target);
      this.src = await connectToTenant(this.runtime, this.move.source, this.tenantId, 'tenancy-move');
      this.dst = await connectToTenant(this.runtime, this.move.target, this.tenantId, 'tenancy-move');
      // The audit log and its chain are copied as they are; the target's pending queue and chain
      // head follow what is copied (migrations/tenant/0004).
      await this.dst.query(`SET app.audit_maintenance = 'on'`);
      this.tables = await this.compatibleTables();
      if (this.move.phase === 'preparing') {
        await this.clearTarget();
        const tables: Record<string, TableProgress> = {};
        for (const t of this.tables) tables[t.name] = { rows: (await fingerprint(this.src, t, this.tenantId)).rows, copied: 0 };
        const rowsTotal = Object.values(tables).reduce((n, t) => n + t.rows, 0);
        await this.set({ phase: 'copying', progress: tables, rows_total: rowsTotal, rows_copied: 0 });
      }
      if (this.move.phase === 'copying') {
        for (const t of this.tables) await this.copyTable(t);
        await this.set({ phase: 'catching_up' });
      }
      // While the tenant is fully live: most of what changed during the copy.
      await this.catchUpLive();
      await this.checkpoint();
      for (let attempt = 1; ; attempt++) {
        const outcome = await this.cutover();
        if (outcome !== 'busy') break;
        if (attempt >= FREEZE_ATTEMPTS) {
          throw new Error(`writes under way did not finish within ${this.options.freezeWaitMs} ms on ${FREEZE_ATTEMPTS} attempts; resume the move later`);
        }
        await this.catchUpLive();
      }
      return this.move;
    } catch (err) {
      return await this.fail(err as Error);
    } finally {
      await this.src?.end().catch(() => undefined);
      await this.dst?.end().catch(() => undefined);
    }
  }

  private async fail(err: Error): Promise<MoveRecord> {
    if (err instanceof VerificationFailed) {
      return this.engine.rollBack(this.move, 'failed', err.message, this.actor, err.verification);
    }
    if (err instanceof RunStopped && err.rollBack) {
      return this.engine.rollBack(this.move, 'aborted', 'aborted by request', this.actor);
    }
    // Anything else leaves the move where it was (the tenant serves from its source): resumable.
    const reason = err instanceof RunStopped ? `stopped: ${err.message}` : err.message;
    this.options.log?.({ moveId: this.move.id, tenantId: this.tenantId, phase: this.move.phase, reason }, 'move interrupted; resume or abort it');
    this.move = await this.engine.update(this.control, this.move.id, { error: reason, runner: null });
    this.run.onProgress?.(this.move);
    if (err instanceof RunStopped) return this.move;
    throw err;
  }

  private async step(phase: MovePhase): Promise<void> {
    if (this.move.phase !== phase) await this.set({ phase });
  }

  private async set(fields: Record<string, unknown>): Promise<void> {
    const updated = await this.engine.update(this.control, this.move.id, fields);
    this.move = updated;
    this.run.onProgress?.(this.move);
    if (updated.abortRequested) throw new RunStopped(true, 'abort requested');
  }

  private async checkpoint(): Promise<void> {
    const signal = this.run.signal;
    if (signal?.aborted) throw new RunStopped(signal.reason === 'abort', typeof signal.reason === 'string' ? signal.reason : 'stopped');
    await this.set({});
  }

  /** The tenant tables of the source; the target must have the same tables and columns (same migrations). */
  private async compatibleTables(): Promise<TenantTable[]> {
    const [srcVersions, dstVersions] = [await appliedMigrations(this.src), await appliedMigrations(this.dst)];
    if (srcVersions.join() !== dstVersions.join()) {
      throw new LifecycleError(
        'MIGRATION_VERSION_MISMATCH',
        `source and target are on different tenant migrations (${srcVersions.at(-1) ?? 'none'} vs ${dstVersions.at(-1) ?? 'none'}); run migrate first`,
      );
    }
    const [a, b] = [await tenantTables(this.src), await tenantTables(this.dst)];
    const shape = (ts: TenantTable[]) => ts.map((t) => `${t.name}(${t.columns.join(',')})`).join(';');
    if (shape(a) !== shape(b)) throw new LifecycleError('MIGRATION_VERSION_MISMATCH', 'source and target tables differ; run migrate first');
    return a;
  }

  /** A target must start with nothing of this tenant (a shared target may hold leftovers of an old move). */
  private async clearTarget(): Promise<void> {
    await deleteTenantRows(this.dst, this.tenantId);
  }

  private keyLiteral(t: TenantTable, key: string): string {
    return t.keyType === 'uuid' ? uuidLiteral(key) : `${this.dst.escapeLiteral(key)}::${t.keyType}`;
  }

  /** Rows whose foreign keys point at rows the target has (a live copy can meet a child before its parent). */
  private parentsPresent(t: TenantTable): string {
    if (!t.foreignKeys.length) return 'true';
    return t.foreignKeys
      .map((fk) => {
        const nulls = fk.columns.map((c) => `s.${quoteIdent(c)} IS NULL`).join(' OR ');
        const match = fk.columns.map((c, i) => `p.${quoteIdent(fk.parentColumns[i])} = s.${quoteIdent(c)}`).join(' AND ');
        return `(${nulls} OR EXISTS (SELECT 1 FROM ${quoteIdent(fk.parent)} p WHERE ${match}))`;
      })
      .join(' AND ');
  }

  private staging(t: TenantTable): string {
    return quoteIdent(`_move_${this.tables.indexOf(t)}`);
  }

  private async ensureStaging(t: TenantTable): Promise<string> {
    const name = this.staging(t);
    await this.dst.query(`CREATE TEMP TABLE IF NOT EXISTS ${name} (LIKE ${quoteIdent(t.name)}) ON COMMIT DELETE ROWS`);
    return name;
  }

  /** Streams `select` (rows of t, all columns in canonical order) from the source into t's staging table on the target; inside a target transaction. */
  private async stage(t: TenantTable, select: string): Promise<number> {
    const staging = await this.ensureStaging(t);
    const out = this.src.query(copyTo(`COPY (${select}) TO STDOUT`));
    const into = this.dst.query(copyFrom(`COPY ${staging} (${columnList(t)}) FROM STDIN`));
    await pipeline(out, into);
    return into.rowCount;
  }

  private async copyTable(t: TenantTable): Promise<void> {
    const name = quoteIdent(t.name);
    const key = quoteIdent(t.key);
    const staging = this.staging(t);
    // The target's own rows are the checkpoint: each batch commits as a whole, in key order.
    let last = await this.lastKey(t, name);
    const progress = { ...(this.move.tables[t.name] ?? { rows: 0, copied: 0 }) };
    for (;;) {
      await this.dst.query('BEGIN');
      const batch = await this.stage(
        t,
        `SELECT ${columnList(t)} FROM ${name} WHERE organization_id = ${uuidLiteral(this.tenantId)}` +
          `${last === null ? '' : ` AND ${key} > ${this.keyLiteral(t, last)}`} ORDER BY ${key} LIMIT ${this.options.batchRows}`,
      );
      if (batch > 0) {
        await this.dst.query(
          `INSERT INTO ${name} (${columnList(t)}) SELECT ${columnList(t)} FROM ${staging} s WHERE ${this.parentsPresent(t)}
           ON CONFLICT (organization_id, ${key}) DO NOTHING`,
        );
        last = await this.lastKey(t, staging);
      }
      await this.dst.query('COMMIT');
      progress.copied = Math.min(progress.rows, progress.copied + batch);
      const tables = { ...this.move.tables, [t.name]: progress };
      const rowsCopied = Object.values(tables).reduce((n, x) => n + x.copied, 0);
      this.move = { ...this.move, tables };
      await this.set({ progress: tables, rows_copied: rowsCopied });
      await this.checkpoint();
      if (batch < this.options.batchRows) break;
    }
  }

  /** The greatest key in a target table (there is no max() for every key type, uuid among them). */
  private async lastKey(t: TenantTable, relation: string): Promise<string | null> {
    const { rows } = await this.dst.query<{ k: string }>(`SELECT ${quoteIdent(t.key)}::text AS k FROM ${relation} ORDER BY ${quoteIdent(t.key)} DESC LIMIT 1`);
    return rows[0]?.k ?? null;
  }

  /** The bucket of a row: a hash of its key, so both sides put every row in the same one. */
  private bucketOf(t: TenantTable): string {
    return `(hashtextextended(${quoteIdent(t.key)}::text, 0) & ${BUCKETS - 1})::int`;
  }

  /**
   * Count and checksum (as in fingerprint()) of the tenant's rows of t per bucket, on one side, in
   * one aggregate pass: two sides compare buckets without shipping a row, and only the buckets
   * that differ are diffed row by row.
   */
  private async bucketSums(client: pg.Client, t: TenantTable, only?: number[]): Promise<Map<number, Bucket>> {
    const { rows } = await client.query<{ b: number; n: string; s: string }>(
      `SELECT ${this.bucketOf(t)} AS b, count(*)::text AS n,
              sum(('x' || substr(md5(ROW(${columnList(t)})::text), 1, 16))::bit(64)::bigint::numeric)::text AS s
         FROM ${quoteIdent(t.name)} WHERE organization_id = $1 ${only ? `AND ${this.bucketOf(t)} = ANY ($2::int[])` : ''}
        GROUP BY 1`,
      only ? [this.tenantId, only] : [this.tenantId],
    );
    return new Map(rows.map((r) => [r.b, { rows: BigInt(r.n), checksum: BigInt(r.s) }]));
  }

  /** Both sides' bucket sums of every table, side by side (the two servers work at the same time). */
  private async compareBuckets(only?: Map<TenantTable, number[]>): Promise<Map<TenantTable, { src: Map<number, Bucket>; dst: Map<number, Bucket> }>> {
    const out = new Map<TenantTable, { src: Map<number, Bucket>; dst: Map<number, Bucket> }>();
    for (const t of this.tables) {
      const buckets = only?.get(t);
      if (only && !buckets?.length) continue;
      const [src, dst] = await Promise.all([this.bucketSums(this.src, t, buckets), this.bucketSums(this.dst, t, buckets)]);
      out.set(t, { src, dst });
    }
    return out;
  }

  private static differing(a: Map<number, Bucket>, b: Map<number, Bucket>): number[] {
    const out: number[] = [];
    for (const k of new Set([...a.keys(), ...b.keys()])) {
      const x = a.get(k);
      const y = b.get(k);
      if (!x || !y || x.rows !== y.rows || x.checksum !== y.checksum) out.push(k);
    }
    return out;
  }

  /** Keys (as text, with each row's MD5) of the tenant's rows of t in some buckets on one side, in an order both sides share. */
  private digestQuery(t: TenantTable, buckets: number[]): string {
    const order = t.keyType === 'uuid' ? quoteIdent(t.key) : `${quoteIdent(t.key)}::text COLLATE "C"`;
    return `COPY (SELECT ${quoteIdent(t.key)}::text, md5(ROW(${columnList(t)})::text) FROM ${quoteIdent(t.name)}
                   WHERE organization_id = ${uuidLiteral(this.tenantId)} AND ${this.bucketOf(t)} IN (${buckets.map((b) => String(Math.trunc(b))).join(', ')})
                   ORDER BY ${order}) TO STDOUT`;
  }

  /** Which keys the target must take (missing or different) and which it must lose (gone at the source). */
  private async diff(t: TenantTable, buckets: number[]): Promise<{ upsert: string[]; remove: string[] }> {
    if (!buckets.length) return { upsert: [], remove: [] };
    const a = copyLines(this.src.query(copyTo(this.digestQuery(t, buckets))));
    const b = copyLines(this.dst.query(copyTo(this.digestQuery(t, buckets))));
    const upsert: string[] = [];
    const remove: string[] = [];
    let x = await a.next();
    let y = await b.next();
    while (!x.done || !y.done) {
      if (y.done || (!x.done && x.value[0] < y.value[0])) {
        upsert.push(x.value[0]);
        x = await a.next();
      } else if (x.done || y.value[0] < x.value[0]) {
        remove.push(y.value[0]);
        y = await b.next();
      } else {
        if (x.value[1] !== y.value[1]) upsert.push(x.value[0]);
        x = await a.next();
        y = await b.next();
      }
    }
    return { upsert, remove };
  }

  /**
   * Makes the target equal the source, table by table: deletions children first, then inserts
   * and updates parents first. Live (before the freeze), rows whose parent the target lacks yet
   * wait for the next pass; frozen, the source stands still and the result is exact.
   */
  private async reconcile(live: boolean, buckets: Map<TenantTable, number[]>): Promise<{ upserted: number; removed: number }> {
    const diffs = new Map<TenantTable, { upsert: string[]; remove: string[] }>();
    for (const t of this.tables) diffs.set(t, await this.diff(t, buckets.get(t) ?? []));
    let upserted = 0;
    let removed = 0;
    await this.dst.query('BEGIN');
    for (const t of [...this.tables].reverse()) {
      const keys = diffs.get(t)!.remove;
      for (let i = 0; i < keys.length; i += UPSERT_CHUNK) {
        const chunk = keys.slice(i, i + UPSERT_CHUNK);
        const r = await this.dst.query(`DELETE FROM ${quoteIdent(t.name)} WHERE organization_id = $1 AND ${quoteIdent(t.key)}::text = ANY ($2::text[])`, [
          this.tenantId,
          chunk,
        ]);
        removed += r.rowCount ?? 0;
      }
    }
    for (const t of this.tables) {
      const keys = diffs.get(t)!.upsert;
      const others = t.columns.filter((c) => c !== 'organization_id' && c !== t.key);
      for (let i = 0; i < keys.length; i += UPSERT_CHUNK) {
        const chunk = keys.slice(i, i + UPSERT_CHUNK);
        await this.stage(
          t,
          `SELECT ${columnList(t)} FROM ${quoteIdent(t.name)} WHERE organization_id = ${uuidLiteral(this.tenantId)}
             AND ${quoteIdent(t.key)} IN (${chunk.map((k) => this.keyLiteral(t, k)).join(', ')})`,
        );
        const r = await this.dst.query(
          `INSERT INTO ${quoteIdent(t.name)} (${columnList(t)}) SELECT ${columnList(t)} FROM ${this.staging(t)} s
            ${live ? `WHERE ${this.parentsPresent(t)}` : ''}
           ON CONFLICT (organization_id, ${quoteIdent(t.key)}) DO ${
             others.length ? `UPDATE SET ${others.map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`).join(', ')}` : 'NOTHING'
           }`,
        );
        upserted += r.rowCount ?? 0;
        // Staging rows last until COMMIT (ON COMMIT DELETE ROWS): empty it for the next chunk.
        await this.dst.query(`DELETE FROM ${this.staging(t)}`);
      }
    }
    await this.dst.query('COMMIT');
    if (upserted || removed) this.options.log?.({ moveId: this.move.id, upserted, removed, live }, 'move caught up');
    return { upserted, removed };
  }

  /**
   * A live pass only shortens the frozen one: while writers change the source under it, a pass
   * can trip over a row that moved on (a foreign key without cascade, say). Then the frozen pass,
   * which is exact, does the work.
   */
  private async catchUpLive(): Promise<void> {
    try {
      const sums = await this.compareBuckets();
      const buckets = new Map([...sums].map(([t, { src, dst }]) => [t, MoveRun.differing(src, dst)]));
      await this.reconcile(true, buckets);
    } catch (err) {
      await this.dst.query('ROLLBACK').catch(() => undefined);
      this.options.log?.({ moveId: this.move.id, reason: (err as Error).message }, 'live catch-up pass skipped; the frozen pass will do it');
    }
  }

  /**
   * The frozen pass: compare every bucket of every table (one aggregate scan per side), diff and
   * apply only the buckets that differ, then compare those buckets again. Nothing else writes to
   * either side meanwhile (the source is frozen, the target not routed), so the table totals
   * summed over all buckets are the verification: per table, row counts and the order-independent
   * checksum of fingerprint(), equal on both sides.
   */
  private async catchUpAndVerify(): Promise<{ delta: { upserted: number; removed: number }; verification: Verification }> {
    const sums = await this.compareBuckets();
    const stale = new Map([...sums].map(([t, { src, dst }]) => [t, MoveRun.differing(src, dst)]));
    const delta = await this.reconcile(false, stale);
    await this.set({ phase: 'verifying' });
    const again = await this.compareBuckets(stale);
    const tables: Record<string, TableVerification> = {};
    for (const t of this.tables) {
      const { src, dst } = sums.get(t)!;
      const redone = again.get(t);
      for (const b of stale.get(t) ?? []) {
        src.delete(b);
        dst.delete(b);
        const x = redone?.src.get(b);
        const y = redone?.dst.get(b);
        if (x) src.set(b, x);
        if (y) dst.set(b, y);
      }
      const total = (m: Map<number, Bucket>): TableFingerprint => {
        let rows = 0n;
        let checksum = 0n;
        for (const v of m.values()) {
          rows += v.rows;
          checksum += v.checksum;
        }
        return { rows: Number(rows), checksum: checksum.toString() };
      };
      const source = total(src);
      const target = total(dst);
      tables[t.name] = { source, target, ok: MoveRun.differing(src, dst).length === 0 && source.rows === target.rows && source.checksum === target.checksum };
    }
    return { delta, verification: { ok: Object.values(tables).every((t) => t.ok), at: new Date().toISOString(), tables } };
  }

  /**
   * Freeze, final catch-up, verification, fence, flip, unfreeze. 'busy' when writes under way did
   * not finish in time (the freeze is lifted at once and tried again later).
   */
  private async cutover(): Promise<'flipped' | 'busy'> {
    const writeLock = `tenant-writes:${this.tenantId}`;
    try {
      await this.src.query(`SET lock_timeout = ${Math.floor(this.options.freezeWaitMs)}`);
      await this.src.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [writeLock]);
    } catch (err) {
      if ((err as { code?: string }).code === '55P03') return 'busy';
      throw err;
    } finally {
      await this.src.query('SET lock_timeout = 0').catch(() => undefined);
    }
    const frozenAt = performance.now();
    let flipped = false;
    try {
      await this.set({ phase: 'frozen' });
      const { delta, verification } = await this.catchUpAndVerify();
      if (!verification.ok) throw new VerificationFailed(verification);
      // Versions again: a rollout may have run while we copied.
      await this.compatibleTables();
      await this.src.query('INSERT INTO tenant_fences (move_id) VALUES ($1)', [this.move.id]);
      flipped = await this.flip(verification, delta, Math.round(performance.now() - frozenAt));
      if (!flipped) {
        await this.src.query('DELETE FROM tenant_fences');
        throw new RunStopped(false, 'the move was aborted or taken over during its cutover; the tenant stays at its source');
      }
    } finally {
      await this.src.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [writeLock]).catch(() => undefined);
    }
    const freezeMs = Math.round(performance.now() - frozenAt);
    this.move = await this.engine.update(this.control, this.move.id, { freeze_ms: freezeMs });
    this.run.onProgress?.(this.move);
    this.options.log?.({ moveId: this.move.id, tenantId: this.tenantId, freezeMs, to: this.move.target }, 'tenant moved');
    return 'flipped';
  }

  /** The routing table and the move, in one control-plane transaction; the tenants trigger notifies every instance. */
  private async flip(verification: Verification, delta: { upserted: number; removed: number }, freezeMs: number): Promise<boolean> {
    const { source: s, target: d } = this.move;
    await this.control.query('BEGIN');
    try {
      const move = await this.control.query(
        `UPDATE ${CONTROL_SCHEMA}.tenant_moves
            SET phase = 'flipped', flipped_at = now(), updated_at = now(), runner = NULL, verification = $2, freeze_ms = $3,
                cleanup_after = now() + make_interval(secs => $4)
          WHERE id = $1 AND phase = 'verifying' AND runner = $5 AND abort_requested_at IS NULL`,
        [this.move.id, JSON.stringify(verification), freezeMs, this.options.cleanupDelaySeconds, RUNNER_ID],
      );
      const tenant = await this.control.query(
        `UPDATE ${CONTROL_SCHEMA}.tenants SET tier = $2, server_key = $3, database_name = $4, schema_name = $5, updated_at = now()
          WHERE id = $1 AND tier = $6 AND server_key = $7 AND database_name = $8 AND schema_name = $9`,
        [this.tenantId, d.tier, d.serverKey, d.database, d.schema, s.tier, s.serverKey, s.database, s.schema],
      );
      if (move.rowCount !== 1 || tenant.rowCount !== 1) {
        await this.control.query('ROLLBACK');
        return false;
      }
      await this.engine.auditWith(this.control, this.actor, 'tenant.moved', this.move, {
        from: s,
        to: d,
        rows: this.move.rowsTotal,
        finalDelta: delta,
        verification: Object.fromEntries(Object.entries(verification.tables).map(([k, v]) => [k, v.source])),
      });
      await this.control.query('COMMIT');
      return true;
    } catch (err) {
      await this.control.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }
}
