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
  /** Payment-provider webhooks are not configured on this platform (STRIPE_WEBHOOK_SECRET unset) (503). */
  | 'BILLING_NOT_CONFIGURED';

export class BillingError extends DomainError<BillingErrorCode> {}
