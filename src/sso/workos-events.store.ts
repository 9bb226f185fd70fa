import { Injectable } from '@nestjs/common';
import type { Event as WorkOSEvent } from '@workos-inc/node';
import type { Queryable } from '../tenancy/tenant-directory.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';

export type EventSource = 'webhook' | 'reconcile';
export type EventStatus = 'pending' | 'processed' | 'ignored' | 'failed';

/** A stored event, as claimed for processing. */
export interface ClaimedEvent {
  id: string;
  event: string;
  payload: WorkOSEvent;
  /** Including this one. */
  attempts: number;
  organizationId: string | null;
  subjectId: string | null;
  groupId: string | null;
  occurredAt: Date;
}

/** What an event is about, kept as columns so queues and ordering need no JSON. */
export interface EventKeys {
  organizationId: string | null;
  subjectId: string | null;
  groupId: string | null;
  occurredAt: Date;
}

const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

/**
 * Events that replace each other's effect: of two about the same subject (a directory user, a
 * connection, a directory) in one family, the later one wins. Group membership events are
 * compared within the same group (see supersededBy).
 */
const FAMILIES: ReadonlyArray<readonly string[]> = [
  ['dsync.user.created', 'dsync.user.updated', 'dsync.user.deleted'],
  ['dsync.group.user_added', 'dsync.group.user_removed'],
  ['connection.activated', 'connection.deactivated', 'connection.deleted'],
  ['dsync.activated', 'dsync.deleted'],
];

export function familyOf(event: string): readonly string[] {
  return FAMILIES.find((f) => f.includes(event)) ?? [event];
}

export function keysOf(e: WorkOSEvent): EventKeys {
  const data = (e.data ?? {}) as Record<string, unknown>;
  const user = (data.user ?? null) as Record<string, unknown> | null;
  const group = (data.group ?? null) as Record<string, unknown> | null;
  const at = Date.parse(e.createdAt);
  const occurredAt = Number.isFinite(at) ? new Date(at) : new Date();
  if (e.event === 'dsync.group.user_added' || e.event === 'dsync.group.user_removed') {
    return {
      organizationId: str(user?.organizationId) ?? str(group?.organizationId),
      subjectId: str(user?.id),
      groupId: str(group?.id),
      occurredAt,
    };
  }
  const hasSubject = FAMILIES.some((f) => f.includes(e.event));
  return { organizationId: str(data.organizationId), subjectId: hasSubject ? str(data.id) : null, groupId: null, occurredAt };
}

interface ClaimedRow {
  id: string;
  event: string;
  payload: WorkOSEvent;
  attempts: number;
  organization_id: string | null;
  subject_id: string | null;
  group_id: string | null;
  occurred_at: Date;
}

/** Longest delay between two attempts. */
const MAX_BACKOFF_MS = 10 * 60_000;

/**
 * control.workos_events: WorkOS events stored once by id (webhook deliveries and reconciliation
 * both), then claimed for processing, one organization at a time in WorkOS's order, by any
 * number of app instances.
 */
@Injectable()
export class WorkOSEventStore {
  constructor(private readonly pools: TenantPools) {}

  /** Stores what is new; returns the ids stored now (an id seen before is left exactly as it is). */
  async store(events: WorkOSEvent[], source: EventSource, q: Queryable = this.pools.control()): Promise<Set<string>> {
    if (!events.length) return new Set();
    const keys = events.map(keysOf);
    const rows = await q.query<Array<{ id: string }>>(
      `INSERT INTO control.workos_events (id, event, payload, source, organization_id, subject_id, group_id, occurred_at)
       SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[])
       ON CONFLICT (id) DO NOTHING RETURNING id`,
      [
        events.map((e) => e.id),
        events.map((e) => e.event),
        events.map((e) => JSON.stringify(e)),
        events.map(() => source),
        keys.map((k) => k.organizationId),
        keys.map((k) => k.subjectId),
        keys.map((k) => k.groupId),
        keys.map((k) => k.occurredAt.toISOString()),
      ],
    );
    return new Set(rows.map((r) => r.id));
  }

  /**
   * Leases up to `limit` due events, each the oldest pending event of its organization (so an
   * organization's events are applied one at a time and in order, across all instances; events
   * of no organization are independent). The lease (`next_attempt_at` moved `leaseSeconds` ahead)
   * keeps other instances off it, and hands it to one of them should this process die.
   * SKIP LOCKED: instances claiming at the same moment take different events, never wait.
   */
  async claim(limit: number, leaseSeconds: number): Promise<ClaimedEvent[]> {
    const rows = await this.pools.control().query<ClaimedRow[]>(
      // TypeORM answers a bare UPDATE with [rows, count]: wrapped in a SELECT it answers rows.
      `WITH heads AS (
         SELECT DISTINCT ON (organization_id) id FROM control.workos_events
          WHERE status = 'pending' AND organization_id IS NOT NULL
          ORDER BY organization_id, occurred_at, id
       ), candidates AS (
         SELECT id FROM heads
         UNION ALL
         SELECT id FROM control.workos_events WHERE status = 'pending' AND organization_id IS NULL
       ), due AS (
         -- Status and due time are on the locked row, so they are checked again on its newest
         -- version: an event another instance has just leased or finished is not taken.
         SELECT e.id FROM control.workos_events e
          WHERE e.id IN (SELECT id FROM candidates) AND e.status = 'pending' AND e.next_attempt_at <= now()
          ORDER BY e.occurred_at, e.id
          LIMIT $1
          FOR UPDATE SKIP LOCKED
       ), leased AS (
         UPDATE control.workos_events w
            SET attempts = w.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
           FROM due WHERE w.id = due.id
         RETURNING w.id, w.event, w.payload, w.attempts, w.organization_id, w.subject_id, w.group_id, w.occurred_at
       )
       SELECT * FROM leased`,
      [limit, leaseSeconds],
    );
    return rows
      .map((r) => ({
        id: r.id,
        event: r.event,
        payload: r.payload,
        attempts: r.attempts,
        organizationId: r.organization_id,
        subjectId: r.subject_id,
        groupId: r.group_id,
        occurredAt: r.occurred_at,
      }))
      .sort((a, b) => a.occurredAt.getTime() - b.occurredAt.getTime() || (a.id < b.id ? -1 : 1));
  }

  /** Done: applied, or nothing to apply (`note` says why; kept in last_error for operators). */
  async finish(id: string, status: 'processed' | 'ignored', note: string | null, q: Queryable = this.pools.control()): Promise<void> {
    await q.query(`UPDATE control.workos_events SET status = $2, last_error = $3, processed_at = now() WHERE id = $1 AND status = 'pending'`, [id, status, note]);
  }

  /** A failed attempt: retried after an exponential backoff, or marked failed after the last attempt. */
  async failAttempt(event: ClaimedEvent, error: string, maxAttempts: number, retryBaseMs: number): Promise<'retry' | 'failed'> {
    const last = event.attempts >= maxAttempts;
    const delayMs = Math.min(retryBaseMs * 2 ** (event.attempts - 1), MAX_BACKOFF_MS);
    await this.pools.control().query(
      `UPDATE control.workos_events
          SET status = CASE WHEN $2 THEN 'failed' ELSE 'pending' END, last_error = $3,
              next_attempt_at = now() + make_interval(secs => $4), processed_at = CASE WHEN $2 THEN now() END
        WHERE id = $1 AND status = 'pending'`,
      [event.id, last, error.slice(0, 2000), delayMs / 1000],
    );
    return last ? 'failed' : 'retry';
  }

  /**
   * Whether something newer about the same subject is applied already (or the directory user
   * was deleted, which is final), so this event, delivered late (a retry, or pulled by
   * reconciliation), must not undo it. Returns what supersedes it.
   */
  async supersededBy(event: ClaimedEvent): Promise<string | null> {
    if (!event.subjectId) return null;
    const rows = await this.pools.control().query<Array<{ id: string; event: string }>>(
      `SELECT id, event FROM control.workos_events
        WHERE subject_id = $1 AND id <> $2 AND status IN ('processed', 'ignored')
          AND (event = 'dsync.user.deleted'
               OR ((occurred_at, id) > ($3::timestamptz, $2::text)
                   AND event = ANY ($5::text[]) AND group_id IS NOT DISTINCT FROM $4::text))
        ORDER BY event = 'dsync.user.deleted' DESC LIMIT 1`,
      [event.subjectId, event.id, event.occurredAt.toISOString(), event.groupId, familyOf(event.event)],
    );
    if (!rows.length) return null;
    return rows[0].event === 'dsync.user.deleted' ? `the directory user was deleted (${rows[0].id})` : `${rows[0].event} ${rows[0].id} is newer`;
  }

  /** Failed events become pending again, for a fresh series of attempts. */
  async retryFailed(): Promise<number> {
    const rows = await this.pools.control().query<Array<{ n: number }>>(
      `WITH retried AS (
         UPDATE control.workos_events SET status = 'pending', attempts = 0, next_attempt_at = now(), processed_at = NULL
          WHERE status = 'failed' RETURNING id
       ) SELECT count(*)::int AS n FROM retried`,
    );
    return rows[0].n;
  }

  async statusOf(ids: string[]): Promise<Map<string, { event: string; status: EventStatus; lastError: string | null }>> {
    const rows = await this.pools.control().query<Array<{ id: string; event: string; status: EventStatus; last_error: string | null }>>(
      'SELECT id, event, status, last_error FROM control.workos_events WHERE id = ANY ($1::text[])',
      [ids],
    );
    return new Map(rows.map((r) => [r.id, { event: r.event, status: r.status, lastError: r.last_error }]));
  }

  async cursor(): Promise<string | null> {
    const rows = await this.pools.control().query<Array<{ after: string | null }>>('SELECT after FROM control.workos_event_cursor WHERE id = 1');
    return rows[0]?.after ?? null;
  }

  async saveCursor(after: string): Promise<void> {
    await this.pools.control().query(
      `INSERT INTO control.workos_event_cursor (id, after) VALUES (1, $1)
       ON CONFLICT (id) DO UPDATE SET after = EXCLUDED.after, updated_at = now()`,
      [after],
    );
  }
}
