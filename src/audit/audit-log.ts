import type { EntityManager } from 'typeorm';
import type { AuditActorKind } from './audit.service.js';

export interface AuditQuery {
  actorId?: string;
  actorKind?: AuditActorKind;
  action?: string;
  targetType?: string;
  targetId?: string;
  from?: Date;
  to?: Date;
  /** Entries before this sequence number (keyset, newest first). */
  beforeSeq?: number;
  limit: number;
}

export interface AuditRecord {
  id: string;
  /** Null while the entry waits to be sealed onto the chain (a moment after its write). */
  seq: number | null;
  actorKind: AuditActorKind;
  actorId: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  metadata: Record<string, unknown>;
  requestId: string | null;
  ip: string | null;
  userAgent: string | null;
  createdAt: Date;
  hash: string | null;
}

interface Row {
  id: string;
  seq: string | null;
  actor_kind: AuditActorKind;
  actor_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  metadata: Record<string, unknown>;
  request_id: string | null;
  ip: string | null;
  user_agent: string | null;
  created_at: Date;
  hash: string | null;
}

const toRecord = (r: Row): AuditRecord => ({
  id: r.id,
  seq: r.seq === null ? null : Number(r.seq),
  actorKind: r.actor_kind,
  actorId: r.actor_id,
  action: r.action,
  targetType: r.target_type,
  targetId: r.target_id,
  metadata: r.metadata,
  requestId: r.request_id,
  ip: r.ip,
  userAgent: r.user_agent,
  createdAt: r.created_at,
  hash: r.hash,
});

/**
 * One page of the tenant's audit log, newest first, filtered; `m` is the tenant transaction's
 * manager. Entries waiting to be sealed come first (from the pending queue, a moment's writes),
 * then sealed ones by sequence number, walking the chain's primary key backwards. Each entry is
 * fetched by its key (a LATERAL lookup the planner cannot turn into a join over the whole log).
 */
export async function listAudit(m: EntityManager, q: AuditQuery): Promise<AuditRecord[]> {
  const filters = `($1::text IS NULL OR a.actor_id = $1) AND ($2::text IS NULL OR a.actor_kind = $2) AND ($3::text IS NULL OR a.action = $3)
        AND ($4::text IS NULL OR a.target_type = $4) AND ($5::text IS NULL OR a.target_id = $5)
        AND ($6::timestamptz IS NULL OR a.created_at >= $6) AND ($7::timestamptz IS NULL OR a.created_at < $7)`;
  const columns = 'a.id, a.actor_kind, a.actor_id, a.action, a.target_type, a.target_id, a.metadata, a.request_id, a.ip, a.user_agent, a.created_at';
  const rows = await m.query<Row[]>(
    `SELECT * FROM (
       (SELECT ${columns}, NULL::bigint AS seq, NULL::text AS hash
          FROM audit_pending p
         CROSS JOIN LATERAL (SELECT * FROM audit_log e WHERE e.organization_id = p.organization_id AND e.id = p.id LIMIT 1) a
         WHERE $8::bigint IS NULL AND ${filters})
       UNION ALL
       (SELECT ${columns}, c.seq, encode(c.hash, 'hex') AS hash
          FROM audit_chain c
         CROSS JOIN LATERAL (SELECT * FROM audit_log e WHERE e.organization_id = c.organization_id AND e.id = c.entry_id LIMIT 1) a
         WHERE ($8::bigint IS NULL OR c.seq < $8) AND ${filters}
         ORDER BY c.seq DESC LIMIT $9)
     ) page
     ORDER BY seq DESC NULLS FIRST, created_at DESC, id DESC LIMIT $9`,
    [q.actorId ?? null, q.actorKind ?? null, q.action ?? null, q.targetType ?? null, q.targetId ?? null, q.from ?? null, q.to ?? null, q.beforeSeq ?? null, q.limit],
  );
  return rows.map(toRecord);
}

export type BreakReason = 'hash_mismatch' | 'sequence_gap' | 'truncated' | 'head_mismatch';

export interface ChainVerification {
  ok: boolean;
  /** Sealed entries checked. */
  entries: number;
  /** Entries written but not sealed yet (a moment after their write): not covered by this check. */
  pending: number;
  head: { seq: number; hash: string } | null;
  /** The first entry where the chain breaks, and how. */
  firstBreak?: { seq: number; id: string | null; reason: BreakReason };
}

/**
 * Recomputes the whole chain in one streaming pass in PostgreSQL (a window over the entries in
 * sequence order: flat memory however long the log), and compares its end with the chain head
 * and with the last checkpoint the platform recorded (so a cut-off tail is found too).
 */
export async function verifyChain(m: EntityManager, checkpoint: { seq: number; hash: string } | null): Promise<ChainVerification> {
  // The chain in sequence order, each entry fetched by its key (a scalar subquery: one index
  // lookup a row, whatever the statistics say, so time grows linearly and memory not at all). An
  // entry missing from under its place recomputes to no hash: a mismatch there.
  const [bad] = await m.query<Array<{ seq: string; id: string; reason: BreakReason }>>(
    `SELECT seq, id, CASE WHEN seq <> coalesce(prev_seq, 0) + 1 THEN 'sequence_gap' ELSE 'hash_mismatch' END AS reason
       FROM (SELECT c.seq, c.entry_id AS id, c.hash,
                    lag(c.seq) OVER w AS prev_seq,
                    sha256(coalesce(lag(c.hash) OVER w, '\\x'::bytea)
                           || (SELECT audit_canonical(a, c.seq) FROM audit_log a WHERE a.organization_id = c.organization_id AND a.id = c.entry_id)) AS expected
               FROM audit_chain c
             WINDOW w AS (ORDER BY c.seq)) x
      WHERE seq <> coalesce(prev_seq, 0) + 1 OR hash IS DISTINCT FROM expected
      ORDER BY seq LIMIT 1`,
  );
  // Pending: entries without a place on the chain yet (counted, not joined).
  const [summary] = await m.query<Array<{ n: string; pending: string; last_seq: string | null; last_hash: string | null; head_seq: string | null; head_hash: string | null }>>(
    `SELECT (SELECT count(*) FROM audit_chain) AS n,
            greatest((SELECT count(*) FROM audit_log) - (SELECT count(*) FROM audit_chain), 0) AS pending,
            (SELECT seq FROM audit_chain ORDER BY seq DESC LIMIT 1) AS last_seq,
            (SELECT encode(hash, 'hex') FROM audit_chain ORDER BY seq DESC LIMIT 1) AS last_hash,
            (SELECT seq FROM audit_chain_heads) AS head_seq,
            (SELECT encode(hash, 'hex') FROM audit_chain_heads) AS head_hash`,
  );
  const entries = Number(summary.n);
  const head = summary.last_seq === null ? null : { seq: Number(summary.last_seq), hash: summary.last_hash! };
  const result: ChainVerification = { ok: true, entries, pending: Number(summary.pending), head };
  if (bad) return { ...result, ok: false, firstBreak: { seq: Number(bad.seq), id: bad.id, reason: bad.reason } };
  const lastSeq = head?.seq ?? 0;
  if (checkpoint && checkpoint.seq > lastSeq) {
    return { ...result, ok: false, firstBreak: { seq: lastSeq + 1, id: null, reason: 'truncated' } };
  }
  if (checkpoint) {
    const [at] = await m.query<Array<{ id: string; hash: string }>>(`SELECT entry_id AS id, encode(hash, 'hex') AS hash FROM audit_chain WHERE seq = $1`, [checkpoint.seq]);
    if (!at || at.hash !== checkpoint.hash) return { ...result, ok: false, firstBreak: { seq: checkpoint.seq, id: at?.id ?? null, reason: 'hash_mismatch' } };
  }
  if (summary.head_seq !== null && Number(summary.head_seq) > lastSeq) {
    // The chain head says entries were written after the last one there is.
    return { ...result, ok: false, firstBreak: { seq: lastSeq + 1, id: null, reason: 'truncated' } };
  }
  if (summary.head_seq !== null && (Number(summary.head_seq) !== lastSeq || summary.head_hash !== (head?.hash ?? ''))) {
    return { ...result, ok: false, firstBreak: { seq: Number(summary.head_seq), id: null, reason: 'head_mismatch' } };
  }
  return result;
}
