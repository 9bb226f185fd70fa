/**
 * The statements that write an audit entry (migrations/tenant/0004), in a module of their own so
 * that the audit floor bench (test/bench/audit-floor-bench.ts) sends exactly what the app sends.
 */

/** An entry and its place in the sealing queue (migrations/tenant/0004), in one named statement. */
const insertEntry = (name: string, onConflict: string) => ({
  name,
  sql: `WITH entry AS (
     INSERT INTO audit_log (id, actor_kind, actor_id, action, target_type, target_id, metadata, request_id, ip, user_agent)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)${onConflict} RETURNING id)
   INSERT INTO audit_pending (id) SELECT id FROM entry`,
});
/** A fresh entry: its new id cannot conflict, so the statement is spared the speculative insert. */
export const INSERT_NEW = insertEntry('audit_log_insert', '');
/** An entry from the outbox keeps its id, so a repeated delivery is recorded once. */
export const INSERT_ONCE = insertEntry('audit_log_insert_once', ' ON CONFLICT (organization_id, id) DO NOTHING');
