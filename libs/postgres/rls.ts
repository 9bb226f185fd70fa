import { quoteIdent, uuidLiteral } from './identifiers.js';

/** The setting every tenant table's RLS policy reads. */
export const TENANT_SETTING = 'app.current_org_id';

export interface TenantTransactionOptions {
  organizationId: string;
  schema: string;
  readOnly: boolean;
}

/**
 * One simple-protocol message that opens a transaction and confines it to a tenant:
 * transaction-local settings, so a pooled connection never carries them into the next use.
 * Sent as one round trip, which is most of what tenancy costs per request. Both values are
 * checked against strict patterns before they are inlined.
 */
export function tenantTransactionPrologue(o: TenantTransactionOptions): string {
  return (
    `BEGIN${o.readOnly ? ' READ ONLY' : ''};` +
    `SELECT set_config('${TENANT_SETTING}', ${uuidLiteral(o.organizationId)}, true),` +
    ` set_config('search_path', '${quoteIdent(o.schema)}', true)`
  );
}
