import { ExecutionContext, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Resolvable, ThrottlerModuleOptions, ThrottlerOptions, ThrottlerStorage } from '@nestjs/throttler';
import type { FastifyReply } from 'fastify';
import { TenancyError } from './tenancy.errors.js';
import { TenantLimitCounters } from './bulkhead.js';
import type { TenantRequest } from './tenant-access.guard.js';

// @nestjs/throttler is CommonJS that require()s the ESM @nestjs/common. Loaded only once this
// module's static imports (@nestjs/common among them) have run: Jest's ESM loader refuses a static
// import of it (ERR_REQUIRE_CYCLE_MODULE) because it would build it before @nestjs/common exists.
const throttler = await import('@nestjs/throttler');
export const { ThrottlerModule, getStorageToken } = throttler;

const MINUTE_MS = 60_000;
type ThrottlerStorageRecord = Awaited<ReturnType<ThrottlerStorage['increment']>>;
export const USER_THROTTLER = 'user';
export const TENANT_THROTTLER = 'tenant';

interface Window {
  hits: number;
  expiresAt: number;
  blockedUntil: number;
}

/**
 * The throttler's in-memory storage with O(1) work per hit. @nestjs/throttler's own
 * ThrottlerStorageService keeps one timestamp per hit and filters them on every request: O(limit)
 * per request, far too slow for plans of thousands of requests a minute. Same contract as the
 * Redis store (@nest-lab/throttler-storage-redis): a fixed window from a key's first hit; once
 * over the limit the key is blocked for blockDuration, then counts afresh. So limits behave the
 * same on one instance and on many. Per process: with several instances, use a shared store.
 */
export class FixedWindowThrottlerStorage implements ThrottlerStorage, OnApplicationShutdown {
  private readonly windows = new Map<string, Map<string, Window>>();
  private sweeper?: NodeJS.Timeout;

  increment(key: string, ttl: number, limit: number, blockDuration: number, throttlerName: string): Promise<ThrottlerStorageRecord> {
    return Promise.resolve(this.hit(key, ttl, limit, blockDuration, throttlerName, Date.now()));
  }

  hit(key: string, ttl: number, limit: number, blockDuration: number, throttlerName: string, now: number): ThrottlerStorageRecord {
    let byKey = this.windows.get(throttlerName);
    if (!byKey) {
      byKey = new Map();
      this.windows.set(throttlerName, byKey);
      this.sweeper ??= setInterval(() => this.sweep(Date.now()), MINUTE_MS).unref();
    }
    let w = byKey.get(key);
    if (!w) {
      w = { hits: 0, expiresAt: 0, blockedUntil: 0 };
      byKey.set(key, w);
    }
    if (w.expiresAt <= now) {
      w.hits = 0;
      w.expiresAt = now + ttl;
    }
    w.hits++;
    let blocked = w.blockedUntil > now;
    if (!blocked && w.hits > limit && blockDuration > 0) {
      w.blockedUntil = now + blockDuration;
      blocked = true;
    } else if (!blocked && w.blockedUntil !== 0) {
      // A block just ended: the key starts a fresh window with this hit.
      w.blockedUntil = 0;
      w.hits = 1;
      w.expiresAt = now + ttl;
    }
    return {
      totalHits: w.hits,
      timeToExpire: Math.ceil((w.expiresAt - now) / 1000),
      isBlocked: blocked || w.hits > limit,
      timeToBlockExpire: blocked ? Math.ceil((w.blockedUntil - now) / 1000) : 0,
    };
  }

  /** Hits counted for a key in its current window (0 when none): for tests and diagnostics. */
  hitsOf(key: string, throttlerName: string, now = Date.now()): number {
    const w = this.windows.get(throttlerName)?.get(key);
    return w && w.expiresAt > now ? w.hits : 0;
  }

  onApplicationShutdown(): void {
    clearInterval(this.sweeper);
    this.windows.clear();
  }

  private sweep(now: number): void {
    for (const byKey of this.windows.values()) {
      for (const [key, w] of byKey) if (w.expiresAt <= now && w.blockedUntil <= now) byKey.delete(key);
    }
  }
}

/** Requests per minute of the request's tenant under its plan; null: no limit (or no plan). */
function tenantRpm(context: ExecutionContext): number | null {
  return context.switchToHttp().getRequest<TenantRequest>().tenantAccess?.limits?.requestsPerMinute ?? null;
}

export function userLimit(rpm: number, userRatePercent: number): number {
  return Math.ceil((rpm * userRatePercent) / 100);
}

/**
 * ThrottlerModule options for tenant rate limits: a per-user throttler (the user's share of the
 * tenant's budget) and a per-tenant one, both over one minute, their limits read from the plan
 * on each request (TenantThrottlerGuard never asks them about a plan without a limit).
 * `storage` is where the counters live: in this process by default (one instance); any
 * ThrottlerStorage, such as @nest-lab/throttler-storage-redis, shares them between instances.
 */
export function tenantThrottlerOptions(userRatePercent: number, storage: ThrottlerStorage = new FixedWindowThrottlerStorage()): ThrottlerModuleOptions {
  return {
    storage,
    throttlers: [
      { name: USER_THROTTLER, ttl: MINUTE_MS, limit: (ctx) => userLimit(tenantRpm(ctx) ?? 0, userRatePercent) },
      { name: TENANT_THROTTLER, ttl: MINUTE_MS, limit: (ctx) => tenantRpm(ctx) ?? 0 },
    ],
  };
}

type HeaderNames = readonly [limit: string, remaining: string, reset: string];

interface Outcome {
  /** The X-RateLimit-Limit, -Remaining and -Reset header names of its throttler. */
  headers: HeaderNames;
  limit: number;
  remaining: number;
  /** Seconds until the count starts afresh (while blocked: until the block ends). */
  reset: number;
  blocked: boolean;
}

/**
 * Rate limits per tenant and per user within it, from the tenant's plan (the two throttlers of
 * tenantThrottlerOptions). Runs right after TenantAccessGuard (see TenantScoped), so only admitted
 * members spend a tenant's budget. The user is counted first: a user over their own share is
 * refused before spending the tenant's. Unlimited plans, and requests without plan limits, touch
 * no storage at all.
 *
 * Headers: X-RateLimit-Limit/Remaining/Reset-user and -tenant per throttler (as @nestjs/throttler
 * names them), plus unsuffixed X-RateLimit-Limit/Remaining/Reset for whichever of the two leaves
 * fewer requests, and a standard Retry-After on 429 (the throttler itself sends only
 * Retry-After-<name>, which clients and proxies do not know). Reset counts seconds.
 */
@Injectable()
export class TenantThrottlerGuard extends throttler.ThrottlerGuard {
  private readonly user: ThrottlerOptions;
  private readonly tenant: ThrottlerOptions;
  private readonly headerNames: Record<'user' | 'tenant' | 'binding', HeaderNames>;

  constructor(
    @throttler.InjectThrottlerOptions() options: ThrottlerModuleOptions,
    @throttler.InjectThrottlerStorage() storage: ThrottlerStorage,
    reflector: Reflector,
    private readonly counters: TenantLimitCounters,
  ) {
    super(options, storage, reflector);
    const throttlers = Array.isArray(options) ? options : options.throttlers;
    const named = (name: string) => {
      const t = throttlers.find((x) => x.name === name);
      if (!t) throw new Error(`ThrottlerModule has no '${name}' throttler: register it with tenantThrottlerOptions()`);
      return t;
    };
    this.user = named(USER_THROTTLER);
    this.tenant = named(TENANT_THROTTLER);
    // Lower case, as Fastify stores them (it lower-cases every name it is given).
    const names = (suffix: string): HeaderNames => {
      const name = (h: string) => `${this.headerPrefix}-${h}${suffix}`.toLowerCase();
      return [name('Limit'), name('Remaining'), name('Reset')];
    };
    this.headerNames = { user: names(`-${USER_THROTTLER}`), tenant: names(`-${TENANT_THROTTLER}`), binding: names('') };
  }

  override async canActivate(context: ExecutionContext): Promise<boolean> {
    const access = context.switchToHttp().getRequest<TenantRequest>().tenantAccess;
    if (!access || tenantRpm(context) === null) return true;
    const reply = context.switchToHttp().getResponse<FastifyReply>();
    const counted = this.count(context, this.user, `${access.route.id}:${access.userId}`, this.headerNames.user);
    const user = counted instanceof Promise ? await counted : counted;
    this.setHeaders(reply, user, user.headers);
    let binding = user;
    if (!user.blocked) {
      const next = this.count(context, this.tenant, access.route.id, this.headerNames.tenant);
      const tenant = next instanceof Promise ? await next : next;
      this.setHeaders(reply, tenant, tenant.headers);
      if (tenant.blocked || tenant.remaining < user.remaining) binding = tenant;
    }
    this.setHeaders(reply, binding, this.headerNames.binding);
    if (!binding.blocked) return true;
    const message =
      binding === user
        ? `you have made more than the ${binding.limit} requests per minute this plan allows one user; retry in ${binding.reset} s`
        : `this tenant has made more than the ${binding.limit} requests per minute its plan allows; retry in ${binding.reset} s`;
    if (binding === user) this.counters.throttledUser++;
    else this.counters.throttledTenant++;
    throw new TenancyError('RATE_LIMITED', message, undefined, { 'retry-after': String(binding.reset) });
  }

  /** Counts one hit; synchronous with the in-process store and plain-number options (the common case). */
  private count(context: ExecutionContext, throttler: ThrottlerOptions, key: string, headers: HeaderNames): Outcome | Promise<Outcome> {
    const limit = resolve(throttler.limit, context);
    const ttl = resolve(throttler.ttl, context);
    const blockDuration = throttler.blockDuration === undefined ? ttl : resolve(throttler.blockDuration, context);
    if (typeof limit !== 'number' || typeof ttl !== 'number' || typeof blockDuration !== 'number') {
      return Promise.all([limit, ttl, blockDuration]).then(([l, t, b]) => this.storageService.increment(key, t, l, b, throttler.name!).then((r) => outcome(r, l, headers)));
    }
    const store = this.storageService;
    if (store instanceof FixedWindowThrottlerStorage) return outcome(store.hit(key, ttl, limit, blockDuration, throttler.name!, Date.now()), limit, headers);
    return store.increment(key, ttl, limit, blockDuration, throttler.name!).then((r) => outcome(r, limit, headers));
  }

  private setHeaders(reply: FastifyReply, o: Outcome, [limit, remaining, reset]: HeaderNames): void {
    reply.header(limit, o.limit);
    reply.header(remaining, o.remaining);
    reply.header(reset, o.reset);
  }
}

function resolve(value: Resolvable<number>, context: ExecutionContext): number | Promise<number> {
  return typeof value === 'function' ? value(context) : value;
}

function outcome(r: ThrottlerStorageRecord, limit: number, headers: HeaderNames): Outcome {
  return {
    headers,
    limit,
    remaining: r.isBlocked ? 0 : Math.max(0, limit - r.totalHits),
    reset: Math.max(1, r.isBlocked ? Math.max(r.timeToBlockExpire, r.timeToExpire) : r.timeToExpire),
    blocked: r.isBlocked,
  };
}
