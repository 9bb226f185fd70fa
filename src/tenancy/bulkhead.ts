import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import { TenancyError } from './tenancy.errors.js';

/**
 * What the per-tenant limits refused or delayed since the instance started: plain counters, to
 * be exported (Prometheus) by whoever serves /metrics.
 */
@Injectable()
export class TenantLimitCounters {
  /** 429 RATE_LIMITED because the tenant as a whole went over its plan's requests per minute. */
  throttledTenant = 0;
  /** 429 RATE_LIMITED because one user went over their share of it (RATE_LIMIT_USER_PERCENT). */
  throttledUser = 0;
  /** Requests that found their tenant at its concurrency cap and queued for a slot. */
  bulkheadWaits = 0;
  /** Of those, the ones that got no slot within BULKHEAD_WAIT_MS: 429 TENANT_BUSY. */
  bulkheadRejections = 0;
  /** Queries cancelled by the plan's statement timeout: 503 QUERY_TIMEOUT. */
  statementTimeouts = 0;
}

/** Something that says when the client has gone away (the raw HTTP response: 'close'). */
export interface Abandonable {
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

interface Waiter {
  /** The cap that applied when this request arrived (a plan change applies to later arrivals). */
  max: number;
  admit(): void;
}

/** One tenant's compartment: the slots it holds and the requests queued for one, first come first served. */
export interface Compartment {
  readonly key: string;
  active: number;
  readonly waiters: Waiter[];
}

// Idle compartments are kept (so a tenant's next request allocates nothing) until there are this many.
const MAX_KEPT = 10_000;

/**
 * Per-tenant concurrency cap (bulkhead) on the shared database pool: a tenant holds at most its
 * plan's maxConcurrent connections; requests over it queue (FIFO) for up to BULKHEAD_WAIT_MS,
 * then get 429 TENANT_BUSY. A free slot is taken synchronously, without a promise or an
 * allocation; only a request that has to wait pays for one.
 */
@Injectable()
export class TenantBulkhead {
  private readonly compartments = new Map<string, Compartment>();
  private readonly waitMs: number;

  constructor(
    config: ConfigService<AppConfig, true>,
    private readonly counters: TenantLimitCounters,
  ) {
    this.waitMs = config.get('limits', { infer: true }).bulkheadWaitMs;
  }

  /**
   * Takes one of the tenant's `max` slots: the compartment at once when one is free, otherwise a
   * promise of it, rejected with TENANT_BUSY after the wait (or when `client` closes meanwhile).
   * Every compartment returned must be given back with leave(), exactly once.
   */
  enter(key: string, max: number, client?: Abandonable): Compartment | Promise<Compartment> {
    let c = this.compartments.get(key);
    if (!c) {
      c = { key, active: 0, waiters: [] };
      this.compartments.set(key, c);
    }
    if (c.active < max && c.waiters.length === 0) {
      c.active++;
      return c;
    }
    return this.wait(c, max, client);
  }

  leave(c: Compartment): void {
    c.active--;
    // The slot goes straight to the longest waiter: no newcomer can overtake the queue.
    while (c.waiters.length > 0 && c.active < c.waiters[0].max) {
      c.active++;
      c.waiters.shift()!.admit();
    }
    if (c.active === 0 && c.waiters.length === 0 && this.compartments.size > MAX_KEPT) this.compartments.delete(c.key);
  }

  /** Slots held and requests waiting, per tenant with any (for diagnostics and tests). */
  inUse(): Map<string, { active: number; waiting: number }> {
    const out = new Map<string, { active: number; waiting: number }>();
    for (const c of this.compartments.values()) {
      if (c.active > 0 || c.waiters.length > 0) out.set(c.key, { active: c.active, waiting: c.waiters.length });
    }
    return out;
  }

  private wait(c: Compartment, max: number, client?: Abandonable): Promise<Compartment> {
    if (this.waitMs === 0) {
      this.counters.bulkheadRejections++;
      return Promise.reject(this.busy(max));
    }
    this.counters.bulkheadWaits++;
    return new Promise<Compartment>((resolve, reject) => {
      const drop = () => {
        const i = c.waiters.indexOf(waiter);
        if (i >= 0) c.waiters.splice(i, 1);
      };
      const onClose = () => {
        clearTimeout(timer);
        drop();
        // Nobody will read this answer: a 4xx, so that it is not logged as a server error either.
        reject(new TenancyError('TENANT_BUSY', 'the client went away while its request waited for a slot'));
      };
      const timer = setTimeout(() => {
        client?.off('close', onClose);
        drop();
        this.counters.bulkheadRejections++;
        reject(this.busy(max));
      }, this.waitMs);
      const waiter: Waiter = {
        max,
        admit: () => {
          clearTimeout(timer);
          client?.off('close', onClose);
          resolve(c);
        },
      };
      client?.once('close', onClose);
      c.waiters.push(waiter);
    });
  }

  private busy(max: number): TenancyError {
    return new TenancyError(
      'TENANT_BUSY',
      `this tenant already has ${max} requests running, as many as its plan allows at once, and none finished within ${this.waitMs} ms; retry shortly`,
      undefined,
      { 'retry-after': '1' },
    );
  }
}
