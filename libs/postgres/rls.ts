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
 * transaction-local settings (set_config(..., true) = SET LOCAL), so a pooled connection never
 * carries them into its next use: the tenant, the placement's schema when it is not the
 * connection's default, and the plan's statement timeout, all in one SELECT (one statement
 * however many settings; the timeout applies from the next statement on and ends with the
 * transaction). Every value is checked against a strict pattern before it is inlined. A write
 * transaction also passes the placement's write gate (tenant_write_gate(), migrations/tenant/0002):
 * it fails at once while the tenant's writes are frozen for a move, or when the tenant has moved
 * away from this placement.
 */
export function tenantTransactionPrologue(o: TenantTransactionOptions): string {
  const settings = [`set_config('${TENANT_SETTING}', ${uuidLiteral(o.organizationId)}, true)`];
  if (o.schema) settings.push(`set_config('search_path', '${quoteIdent(o.schema)}', true)`);
  if (o.statementTimeoutMs != null) settings.push(`set_config('statement_timeout', '${timeoutLiteral(o.statementTimeoutMs)}', true)`);
  return `BEGIN${o.readOnly ? ' READ ONLY' : ''};SELECT ${settings.join(', ')}` + (o.readOnly ? '' : ';SELECT tenant_write_gate()');
}
