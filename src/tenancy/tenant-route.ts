export const TIERS = ['shared', 'schema', 'dedicated'] as const;
export type Tier = (typeof TIERS)[number];

export type TenantStatus = 'provisioning' | 'active' | 'suspended' | 'pending_deletion' | 'failed';

export const ROLES = ['owner', 'admin', 'member', 'viewer', 'billing'] as const;
export type Role = (typeof ROLES)[number];

/** Roles that may change product data; the others get read-only transactions. */
export const WRITER_ROLES: readonly Role[] = ['owner', 'admin', 'member'];

export const SLUG_PATTERN = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;
export const SLUG_RULE = 'slug must be 3-63 lowercase letters, digits or dashes, not starting or ending with a dash';

export interface Placement {
  tier: Tier;
  serverKey: string;
  database: string;
  schema: string;
}

/** One row of the routing table, as cached by every app instance. */
export interface TenantRoute {
  id: string;
  slug: string;
  name: string;
  status: TenantStatus;
  statusReason: string | null;
  placement: Placement;
  /** Both set only while the status is pending_deletion: when it was asked for, and from when the purge may run. */
  deletionRequestedAt: Date | null;
  purgeAfter: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

/** A platform support grant a non-member entered the tenant with (see src/support). */
export interface SupportGrantAccess {
  id: string;
  /** read: behaves like a viewer, in READ ONLY transactions; write: like a member. */
  access: 'read' | 'write';
}

/**
 * What a tenant may use per request, from its plan (see TenantAdmission): null means no limit.
 * Enforced by tenancy itself: the rate limit by TenantThrottlerGuard, the statement timeout in
 * the transaction prologue, the concurrency cap (bulkhead) before a connection is taken.
 */
export interface TenantLimits {
  requestsPerMinute: number | null;
  statementTimeoutMs: number | null;
  maxConcurrent: number | null;
}

/** Who is in which tenant for the current request, set by the access guard. */
export interface TenantAccess {
  route: TenantRoute;
  userId: string;
  role: Role;
  readOnly: boolean;
  /** Set only when the caller is support staff admitted through a grant; role is then the grant's stand-in role. */
  supportGrant?: SupportGrantAccess;
  /** Set by the TenantAdmission (billing), when one is registered; absent: no limits. */
  limits?: TenantLimits;
}
