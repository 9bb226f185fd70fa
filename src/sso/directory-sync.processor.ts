import { Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import { DirectorySyncService } from './directory-sync.service.js';
import { ClaimedEvent, WorkOSEventStore } from './workos-events.store.js';

/** Events claimed at once: at most one per organization, so this is also how many organizations progress in parallel. */
const BATCH = 8;
/** How long a claimed event stays with this instance before another may take it (should this one die). */
const LEASE_SECONDS = 120;

export interface DrainResult {
  processed: number;
  ignored: number;
  retried: number;
  failed: number;
}

/**
 * Processes stored WorkOS events in the background of every app instance: woken as soon as a
 * webhook is stored, and every WORKOS_EVENTS_POLL_MS for retries that come due and events stored
 * elsewhere. Instances share the work through WorkOSEventStore.claim (one organization's events
 * one at a time, in order; never one event twice). A failed attempt is retried with exponential
 * backoff; after WORKOS_EVENTS_MAX_ATTEMPTS the event is marked failed with its last error.
 */
@Injectable()
export class DirectorySyncProcessor implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(DirectorySyncProcessor.name);
  private readonly settings: AppConfig['workos']['events'];
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private again = false;
  private stopped = false;

  constructor(
    private readonly store: WorkOSEventStore,
    private readonly sync: DirectorySyncService,
    config: ConfigService<AppConfig, true>,
  ) {
    this.settings = config.get('workos', { infer: true }).events;
  }

  /** Off with WORKOS_EVENTS_POLL_MS=0 (the CLI drains explicitly). */
  get enabled(): boolean {
    return this.settings.pollMs > 0 && !this.stopped;
  }

  onApplicationBootstrap(): void {
    // Events left pending by a previous run are picked up at once, not after the first interval.
    if (this.settings.pollMs > 0) this.schedule(0);
  }

  /** Before the pools close: no new round, and the one under way finishes. */
  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** Something was stored: process it now (or right after the round under way). */
  wake(): void {
    if (!this.enabled) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.rounds().finally(() => (this.running = undefined));
  }

  /** Processes every due event until none is left; resolves with what happened. */
  async drain(): Promise<DrainResult> {
    const result: DrainResult = { processed: 0, ignored: 0, retried: 0, failed: 0 };
    while (!this.stopped) {
      const batch = await this.store.claim(BATCH, LEASE_SECONDS);
      if (!batch.length) break;
      await Promise.all(batch.map((e) => this.processOne(e, result)));
    }
    return result;
  }

  private async rounds(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.drain();
      } catch (err) {
        // The database is unreachable or busy: claimed events come back when their lease ends.
        this.logger.warn({ err: (err as Error).message }, 'processing WorkOS events failed; retrying at the next poll');
        return;
      }
    } while (this.again && !this.stopped);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.wake();
      void (this.running ?? Promise.resolve()).finally(() => this.schedule(this.settings.pollMs));
    }, delayMs);
    this.timer.unref();
  }

  private async processOne(e: ClaimedEvent, result: DrainResult): Promise<void> {
    try {
      const outcome = await this.sync.apply(e);
      await this.store.finish(e.id, outcome.status, outcome.note);
      result[outcome.status]++;
      if (outcome.status === 'ignored') this.logger.log({ eventId: e.id, event: e.event, reason: outcome.note }, 'WorkOS event ignored');
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const next = await this.store.failAttempt(e, message, this.settings.maxAttempts, this.settings.retryBaseMs);
      if (next === 'failed') {
        result.failed++;
        this.logger.error({ eventId: e.id, event: e.event, attempts: e.attempts, err: message }, 'WorkOS event failed for good; see control.workos_events.last_error');
      } else {
        result.retried++;
        this.logger.warn({ eventId: e.id, event: e.event, attempts: e.attempts, err: message }, 'WorkOS event failed; it will be retried');
      }
    }
  }
}
