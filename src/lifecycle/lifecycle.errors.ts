import { DomainError } from '../http/domain-error.js';

export type LifecycleErrorCode =
  /** Writes are paused for a move's cutover (a few seconds); reads keep working. */
  | 'TENANT_WRITE_FROZEN'
  /** The tenant moved while this request was on its way: retrying reaches the new placement. */
  | 'TENANT_MOVED'
  | 'TENANT_PENDING_DELETION'
  /** The tenant is not in a state that allows this transition (e.g. reactivate an active tenant). */
  | 'TENANT_STATE_CONFLICT'
  | 'PURGE_NOT_DUE'
  /** No purge receipt was recorded for this tenant id. */
  | 'PURGE_RECEIPT_NOT_FOUND'
  | 'MOVE_NOT_FOUND'
  | 'MOVE_IN_PROGRESS'
  /** The move is in a phase that does not allow this (e.g. abort after the flip). */
  | 'MOVE_STATE_CONFLICT'
  | 'MOVE_SAME_PLACEMENT'
  /** The source and the target placements are on different tenant migration versions. */
  | 'MIGRATION_VERSION_MISMATCH';

export class LifecycleError extends DomainError<LifecycleErrorCode> {}
