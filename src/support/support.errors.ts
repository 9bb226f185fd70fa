import { DomainError } from '../http/domain-error.js';

export type SupportErrorCode =
  /** Only platform support staff (SUPPORT_STAFF_EMAILS) may do this (403). */
  | 'SUPPORT_STAFF_REQUIRED'
  /** No such grant, or not one the caller may see (404). */
  | 'SUPPORT_GRANT_NOT_FOUND'
  /** The grant was decided already, was revoked, or has expired (409). */
  | 'SUPPORT_GRANT_STATE_CONFLICT'
  /** Nobody approves or denies their own grant (403). */
  | 'SUPPORT_SELF_APPROVAL'
  /** The grant is the other side's to approve: the tenant's, or a platform admin's (403). */
  | 'SUPPORT_APPROVER_MISMATCH';

export class SupportError extends DomainError<SupportErrorCode> {}
