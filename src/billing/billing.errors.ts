import { DomainError } from '../http/domain-error.js';

export type BillingErrorCode =
  /** The tenant's payment is overdue past its grace period: it is read-only until paid (402). */
  | 'PAYMENT_REQUIRED'
  /** Creating this would go over the plan's limit; the body names the feature, the limit and the usage (403). */
  | 'PLAN_LIMIT_REACHED'
  /** The tenant's plan does not include this placement tier (403). */
  | 'PLAN_TIER_NOT_ALLOWED'
  /** No such plan (400). */
  | 'PLAN_NOT_FOUND'
  /** A payment-provider webhook whose signature, age or body is not acceptable (400). */
  | 'BILLING_WEBHOOK_INVALID'
  /** The tenant (or its user) made more requests than its plan allows per minute (429). */
  | 'RATE_LIMITED'
  /** The tenant has as many requests in flight as its plan allows, and none finished in time (429). */
  | 'TENANT_BUSY'
  /** A query ran past the plan's statement timeout and was cancelled (503). */
  | 'QUERY_TIMEOUT';

export class BillingError extends DomainError<BillingErrorCode> {}
