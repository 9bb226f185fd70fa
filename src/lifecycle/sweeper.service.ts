import { Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import { SWEEPER_ACTOR } from './actor.js';
import { AuditCheckpoints } from '../audit/audit-checkpoints.service.js';
import { AuditService } from '../audit/audit.service.js';
import { SessionStore } from '../auth/session-store.service.js';
import { UsageSnapshot } from '../usage/usage-snapshot.js';
import { LifecycleService } from './lifecycle.service.js';
import { MovesService } from './moves.service.js';

export interface SweepStep {
  name: string;
  run: () => Promise<unknown>;
}

/**
 * Background work of every app instance, every LIFECYCLE_SWEEP_INTERVAL_MS (0: off): fences left
 * by moves whose runner died during a cutover are lifted, sources of moves past their clean-up
 * delay are removed, tenants whose grace period is over are purged, and whatever step another
 * part of the lifecycle adds with addStep. Instances sweep independently; each step must be safe to run on several at once
 * (purges lock the tenant row and skip what another instance holds).
 *
 * One sweep at a time: the next is scheduled when the last has finished. A failing step is
 * logged and the others still run; nothing here can stop the process.
 */
@Injectable()
export class LifecycleSweeper implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(LifecycleSweeper.name);
  private readonly steps: SweepStep[] = [];
  private readonly intervalMs: number;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;

  constructor(lifecycle: LifecycleService, moves: MovesService, sessions: SessionStore, checkpoints: AuditCheckpoints, audit: AuditService, usage: UsageSnapshot, config: ConfigService<AppConfig, true>) {
    this.intervalMs = config.get('lifecycle', { infer: true }).sweepIntervalMs;
    // Moves first: a fence left by a runner that died mid-cutover blocks the tenant's writes.
    this.addStep('move recovery and clean-ups', () => moves.sweep());
    this.addStep('purge due tenants', () => lifecycle.purgeDue(SWEEPER_ACTOR));
    this.addStep('forget ended sessions', () => sessions.purgeEnded());
    this.addStep('deliver queued audit entries', () => audit.deliverAll());
    this.addStep('checkpoint audit chains', () => checkpoints.checkpointAll());
    this.addStep('snapshot usage (when USAGE_SNAPSHOT_INTERVAL_MS is up)', () => usage.runIfDue());
  }

  /** Adds a step to every sweep, run after the ones already there. */
  addStep(name: string, run: () => Promise<unknown>): void {
    this.steps.push({ name, run });
  }

  onApplicationBootstrap(): void {
    if (this.intervalMs > 0) this.schedule();
  }

  /** Before the pools close (they close in onApplicationShutdown): no new sweep, and the one under way finishes. */
  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One sweep now (also what the timer runs); resolves when every step has run. */
  sweep(): Promise<void> {
    this.running ??= this.runSteps().finally(() => (this.running = undefined));
    return this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.sweep().finally(() => this.schedule());
    }, this.intervalMs);
    // A pending sweep never keeps the process alive.
    this.timer.unref();
  }

  private async runSteps(): Promise<void> {
    for (const step of this.steps) {
      if (this.stopped) return;
      try {
        await step.run();
      } catch (err) {
        this.logger.error({ step: step.name, err: (err as Error).message }, 'sweep step failed; it runs again on the next sweep');
      }
    }
  }
}
