import { ValidationFailed } from '../http/domain-error.js';
import type { Tier } from '../tenancy/tenant-route.js';

/** Runs one statement and returns its rows: the app's control pool, or the CLI's owner connection. */
export type RunQuery = <T>(sql: string, params: unknown[]) => Promise<T[]>;

const DAY_MS = 86_400_000;
export const MAX_RANGE_DAYS = 366;
export const DEFAULT_RANGE_DAYS = 30;
const DAY_PATTERN = /^(\d{4})-(\d{2})-(\d{2})$/;

/** The UTC calendar day of a moment, as YYYY-MM-DD (what usage_daily.day holds). */
export function utcDay(at: Date): string {
  return at.toISOString().slice(0, 10);
}

/** A real calendar day written YYYY-MM-DD (2025-02-30 is not one). */
export function isDay(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const m = DAY_PATTERN.exec(value);
  if (!m) return false;
  const at = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return at.getUTCFullYear() >= 1 && utcDay(at) === value;
}

export function addDays(day: string, n: number): string {
  return utcDay(new Date(Date.parse(`${day}T00:00:00Z`) + n * DAY_MS));
}

/** Days from `from` to `to`, both included. */
export function daysIn(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / DAY_MS) + 1;
}

/**
 * The days a query asks for: `to` defaults to today (UTC), `from` to DEFAULT_RANGE_DAYS days
 * up to `to`; `from` after `to`, or more than MAX_RANGE_DAYS days, is a 400 naming the field.
 */
export function resolveRange(q: { from?: string; to?: string }, today = utcDay(new Date())): { from: string; to: string } {
  const to = q.to ?? today;
  const from = q.from ?? addDays(to, -(DEFAULT_RANGE_DAYS - 1));
  if (from > to) throw new ValidationFailed('from', `from (${from}) must not be after to (${to})`);
  if (daysIn(from, to) > MAX_RANGE_DAYS) {
    throw new ValidationFailed(q.to !== undefined ? 'to' : 'from', `a range covers at most ${MAX_RANGE_DAYS} days; ${from} to ${to} is ${daysIn(from, to)}`);
  }
  return { from, to };
}

export interface UsageDay {
  day: string;
  requests: number;
  errors: number;
  writes: number;
  dbTimeMs: number;
  /** Snapshot: the tenant's rows per table at the last snapshot of that day; null before the first. */
  rowsStored: Record<string, number> | null;
  activeSeats: number | null;
}

interface UsageDayRow {
  day: string;
  requests: string;
  errors: string;
  writes: string;
  db_time_ms: number;
  rows_stored: Record<string, number> | null;
  active_seats: number | null;
}

/** One tenant's stored usage rows between two days (both included), oldest first; days without a row are left out. */
export async function usageDays(run: RunQuery, tenantId: string, from: string, to: string): Promise<UsageDay[]> {
  const rows = await run<UsageDayRow>(
    `SELECT day::text AS day, requests::text, errors::text, writes::text, db_time_ms, rows_stored, active_seats
       FROM control.usage_daily
      WHERE tenant_id = $1 AND day BETWEEN $2::date AND $3::date
      ORDER BY day`,
    [tenantId, from, to],
  );
  return rows.map((r) => ({
    day: r.day,
    requests: Number(r.requests),
    errors: Number(r.errors),
    writes: Number(r.writes),
    dbTimeMs: r.db_time_ms,
    rowsStored: r.rows_stored,
    activeSeats: r.active_seats,
  }));
}

export const TOP_BY = ['requests', 'db_time'] as const;
export type TopBy = (typeof TOP_BY)[number];

export interface TopTenant {
  tenantId: string;
  slug: string;
  tier: Tier;
  requests: number;
  errors: number;
  writes: number;
  dbTimeMs: number;
}

// Fixed SQL per choice: nothing from the request reaches the statement's text.
const TOP_ORDER: Record<TopBy, string> = {
  requests: 'u.requests DESC, u.db_time_ms DESC',
  db_time: 'u.db_time_ms DESC, u.requests DESC',
};

/** The tenants that used the most between two days (both included), noisiest first. */
export async function topTenants(run: RunQuery, by: TopBy, from: string, to: string, limit: number): Promise<TopTenant[]> {
  const rows = await run<{ tenant_id: string; slug: string; tier: Tier; requests: string; errors: string; writes: string; db_time_ms: number }>(
    `SELECT u.tenant_id, t.slug, t.tier, u.requests::text, u.errors::text, u.writes::text, u.db_time_ms
       FROM (SELECT tenant_id, sum(requests) AS requests, sum(errors) AS errors, sum(writes) AS writes, sum(db_time_ms) AS db_time_ms
               FROM control.usage_daily
              WHERE day BETWEEN $1::date AND $2::date
              GROUP BY tenant_id) u
       JOIN control.tenants t ON t.id = u.tenant_id
      ORDER BY ${TOP_ORDER[by]}, u.tenant_id
      LIMIT $3`,
    [from, to, limit],
  );
  return rows.map((r) => ({
    tenantId: r.tenant_id,
    slug: r.slug,
    tier: r.tier,
    requests: Number(r.requests),
    errors: Number(r.errors),
    writes: Number(r.writes),
    dbTimeMs: r.db_time_ms,
  }));
}
