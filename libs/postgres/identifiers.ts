const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/** Quotes an identifier after checking it against a strict pattern; anything else is a programming error. */
export function quoteIdent(name: string): string {
  if (!IDENT.test(name)) throw new Error(`refusing unsafe SQL identifier ${JSON.stringify(name)}`);
  return `"${name}"`;
}

/** A UUID as an SQL literal, for the few statements that cannot take parameters (multi-statement messages). */
export function uuidLiteral(id: string): string {
  if (!UUID.test(id)) throw new Error(`refusing non-UUID literal ${JSON.stringify(id)}`);
  return `'${id}'`;
}

/** Name of a tenant's own schema or database: derived from its id, never from input. */
export function tenantObjectName(tenantId: string): string {
  if (!UUID.test(tenantId)) throw new Error(`not a tenant id: ${JSON.stringify(tenantId)}`);
  return `t_${tenantId.replaceAll('-', '')}`;
}
