import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import { DATABASE_RUNTIME, DatabaseRuntime } from '../tenancy/placements.js';
import { RoutingTable } from '../tenancy/routing-table.service.js';
import { TenantDirectory } from '../tenancy/tenant-directory.service.js';
import type { Tier } from '../tenancy/tenant-route.js';
import { TenancyError } from '../tenancy/tenancy.errors.js';
import type { Actor } from './actor.js';
import { LifecycleError } from './lifecycle.errors.js';
import { isBeforeFlip, MoveEngine, MoveRecord } from './move-engine.js';

export type MoveState = 'running' | 'interrupted' | 'awaiting_cleanup' | 'finished';

/**
 * Moves as background jobs of this app instance: started or resumed by the API, they run here
 * while the request returns at once; their state is in control.tenant_moves for every instance
 * (and the CLI) to see. On shutdown a running move stops at its next step, resumable.
 */
@Injectable()
export class MovesService implements OnApplicationShutdown {
  private readonly logger = new Logger(MovesService.name);
  readonly engine: MoveEngine;
  private readonly running = new Map<string, { controller: AbortController; done: Promise<unknown> }>();

  constructor(
    @Inject(DATABASE_RUNTIME) runtime: DatabaseRuntime,
    config: ConfigService<AppConfig, true>,
    private readonly routing: RoutingTable,
    private readonly directory: TenantDirectory,
  ) {
    const lifecycle = config.get('lifecycle', { infer: true });
    this.engine = new MoveEngine(runtime, {
      batchRows: lifecycle.moveBatchRows,
      freezeWaitMs: lifecycle.moveFreezeWaitMs,
      cleanupDelaySeconds: lifecycle.moveCleanupDelaySeconds,
      log: (fields, message) => this.logger.log(fields, message),
    });
  }

  async onApplicationShutdown(): Promise<void> {
    for (const r of this.running.values()) r.controller.abort('the app instance is shutting down');
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
    await this.engine.close();
  }

  async start(tenantId: string, to: { tier: Tier; server?: string }, actor: Actor): Promise<MoveRecord> {
    const move = await this.engine.create(tenantId, to, actor);
    this.launch(move);
    return move;
  }

  async resume(tenantId: string, moveId: string): Promise<MoveRecord> {
    const move = await this.engine.get(moveId, tenantId);
    if (!isBeforeFlip(move.phase)) throw new LifecycleError('MOVE_STATE_CONFLICT', `move ${moveId} is ${move.phase}; only a move before its flip can be resumed`);
    if (this.running.has(moveId) || (await this.engine.isRunning(moveId))) {
      throw new LifecycleError('MOVE_IN_PROGRESS', `move ${moveId} is running already`);
    }
    this.launch(move);
    return move;
  }

  async abort(tenantId: string, moveId: string, actor: Actor): Promise<MoveRecord> {
    const local = this.running.get(moveId);
    if (local) {
      await this.engine.get(moveId, tenantId);
      local.controller.abort('abort');
      await local.done;
      return this.engine.get(moveId);
    }
    return this.engine.abort(moveId, actor, tenantId);
  }

  async cleanup(tenantId: string, moveId: string, actor: Actor): Promise<MoveRecord> {
    await this.engine.get(moveId, tenantId);
    return this.engine.cleanup(moveId, actor);
  }

  get(tenantId: string, moveId: string): Promise<MoveRecord> {
    return this.engine.get(moveId, tenantId);
  }

  async list(tenantId: string): Promise<MoveRecord[]> {
    if (!(await this.directory.findTenant(tenantId))) throw new TenancyError('TENANT_NOT_FOUND', `tenant ${tenantId} was not found`, 'id');
    return this.engine.list(tenantId);
  }

  async stateOf(move: MoveRecord): Promise<MoveState> {
    if (move.phase === 'flipped') return 'awaiting_cleanup';
    if (!isBeforeFlip(move.phase)) return 'finished';
    return this.running.has(move.id) || (await this.engine.isRunning(move.id)) ? 'running' : 'interrupted';
  }

  /** Sweeper steps: clean-ups whose delay has passed, and fences left by runners that died during a cutover. */
  async sweep(): Promise<void> {
    await this.engine.recoverInterrupted();
    await this.engine.cleanupDue();
  }

  private launch(move: MoveRecord): void {
    const controller = new AbortController();
    const forget = async () => {
      const t = await this.directory.findTenant(move.tenantId).catch(() => null);
      this.routing.forgetTenant([t?.slug], move.tenantId);
    };
    const done = this.engine
      .run(move.id, {
        signal: controller.signal,
        onProgress: (m) => {
          if (m.phase === 'flipped') void forget();
        },
      })
      .catch((err: Error) => this.logger.error({ moveId: move.id, tenantId: move.tenantId, reason: err.message }, 'move stopped with an error; resume or abort it'))
      .finally(() => this.running.delete(move.id));
    this.running.set(move.id, { controller, done });
  }
}
