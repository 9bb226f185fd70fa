import { ROLES, type Role } from '../tenancy/tenant-route.js';

/** Most privileged first: when several IdP roles or groups map, the highest wins. */
const PRECEDENCE: readonly Role[] = ['owner', 'admin', 'member', 'billing', 'viewer'];

export interface RoleMappingPolicy {
  /** IdP role slug or group name -> tenant role. Only an explicit entry can give 'owner'. */
  mapping: Record<string, Role>;
  /** For everyone nothing maps: never 'owner'. */
  defaultRole: Exclude<Role, 'owner'>;
}

export interface IdpClaims {
  role?: string | null;
  roles?: string[];
  groups?: string[];
}

/**
 * The tenant role of a person as the identity provider describes them, recomputed at every
 * sign-in and directory event. Pure: an IdP can only reach the roles the tenant's mapping names
 * (so never 'owner' unless the tenant maps something to it), and never a platform role, which
 * lives outside tenants altogether.
 */
export function mapRole(policy: RoleMappingPolicy, claims: IdpClaims): Role {
  const names = [claims.role, ...(claims.roles ?? []), ...(claims.groups ?? [])].filter((n): n is string => typeof n === 'string' && n !== '');
  const mapped = names.map((n) => policy.mapping[n]).filter((r): r is Role => r !== undefined && (ROLES as readonly string[]).includes(r));
  if (!mapped.length) return policy.defaultRole;
  return PRECEDENCE.find((r) => mapped.includes(r))!;
}
