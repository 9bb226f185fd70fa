import { quoteIdent, uuidLiteral } from './identifiers.js';

/** The setting every tenant table's RLS policy reads. */
export const TENANT_SETTING = 'app.current_org_id';

export interface TenantTransactionOptions {
  organizationId: string;
  /** The placement's schema; omit it when it is the connection's default search_path already. */
  schema?: string;
  readOnly: boolean;
  /** The plan's statement timeout in ms (SET LOCAL: it ends with the transaction); omit or null for the server's. */
  statementTimeoutMs?: number | null;
}

function timeoutLiteral(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new Error(`statement timeout must be a whole number of milliseconds, got ${ms}`);
  return String(ms);
}

/**
 * One simple-protocol message that opens a transaction and confines it to a tenant with
 * transaction-local settings (SET LOCAL = set_config(..., true)), so a pooled connection never
 * carries them into its next use. Both values are checked against strict patterns before they
 * are inlined. A write transaction also passes the placement's write gate (tenant_write_gate(),
 * migrations/tenant/0002): it fails at once while the tenant's writes are frozen for a move, or
 * when the tenant has moved away from this placement. The plan's statement timeout, set first,
 * covers every statement of the transaction and is gone with it.
 */
export function tenantTransactionPrologue(o: TenantTransactionOptions): string {
  return (
    `BEGIN${o.readOnly ? ' READ ONLY' : ''};` +
    (o.statementTimeoutMs != null ? `SET LOCAL statement_timeout = ${timeoutLiteral(o.statementTimeoutMs)};` : '') +
    `SET LOCAL ${TENANT_SETTING} = ${uuidLiteral(o.organizationId)}` +
    (o.schema ? `;SET LOCAL search_path = ${quoteIdent(o.schema)}` : '') +
    (o.readOnly ? '' : ';SELECT tenant_write_gate()')
  );
}
