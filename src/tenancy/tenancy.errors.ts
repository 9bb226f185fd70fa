import { DomainError } from '../http/domain-error.js';

export type TenancyErrorCode =
  | 'TENANT_NOT_FOUND'
  | 'TENANT_REQUIRED'
  | 'TENANT_MISMATCH'
  | 'TENANT_SUSPENDED'
  | 'TENANT_UNAVAILABLE'
  | 'TENANT_SLUG_TAKEN'
  | 'SERVER_NOT_FOUND'
  | 'TIER_NOT_ALLOWED'
  | 'PROVISIONING_FAILED'
  | 'ROLE_FORBIDDEN'
  | 'TENANT_CONTEXT_MISSING'
  /** The tenant (or its user) made more requests than its plan allows per minute (429). */
  | 'RATE_LIMITED'
  /** The tenant has as many requests in flight as its plan allows, and none finished in time (429). */
  | 'TENANT_BUSY'
  /** A query ran past the plan's statement timeout and was cancelled (503). */
  | 'QUERY_TIMEOUT';

export class TenancyError extends DomainError<TenancyErrorCode> {}

/** One message for "does not exist" and "you are not a member": existence must not leak. */
export function tenantNotFound(slug: string): TenancyError {
  return new TenancyError('TENANT_NOT_FOUND', `tenant '${slug}' was not found`, 'slug');
}
