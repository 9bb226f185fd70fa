import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { ROLES, type Role } from '../tenancy/tenant-route.js';
import { mapRole, RoleMappingPolicy } from './role-mapping.js';

const policy: RoleMappingPolicy = {
  mapping: { 'okta-admins': 'admin', engineering: 'member', finance: 'billing', auditors: 'viewer', founders: 'owner' },
  defaultRole: 'viewer',
};

describe('mapRole', () => {
  it('maps a role slug, a role list or a group; the most privileged match wins', () => {
    expect(mapRole(policy, { role: 'okta-admins' })).toBe('admin');
    expect(mapRole(policy, { roles: ['auditors', 'engineering'] })).toBe('member');
    expect(mapRole(policy, { groups: ['finance', 'auditors'] })).toBe('billing');
    expect(mapRole(policy, { role: 'auditors', groups: ['okta-admins'] })).toBe('admin');
    expect(mapRole(policy, { groups: ['founders', 'finance'] })).toBe('owner');
  });

  it('gives the default to anyone nothing maps, including no claims at all', () => {
    expect(mapRole(policy, {})).toBe('viewer');
    expect(mapRole(policy, { role: 'unknown', groups: ['nobody', ''] })).toBe('viewer');
    expect(mapRole({ mapping: {}, defaultRole: 'member' }, { role: 'admin', groups: ['owner'] })).toBe('member');
  });

  it('is exact: names are not trimmed, case-folded or matched as prefixes', () => {
    expect(mapRole(policy, { groups: ['Okta-Admins', 'okta-admins ', 'okta'] })).toBe('viewer');
  });

  it('never yields owner unless a claim the person has is mapped to owner (any claims, any mapping)', () => {
    const name = fc.string({ maxLength: 8 });
    const role = fc.constantFrom(...ROLES);
    fc.assert(
      fc.property(
        fc.dictionary(name, role),
        fc.constantFrom<Exclude<Role, 'owner'>>('admin', 'member', 'viewer', 'billing'),
        fc.record({ role: fc.option(name), roles: fc.array(name), groups: fc.array(name) }),
        (mapping, defaultRole, claims) => {
          const result = mapRole({ mapping, defaultRole }, claims);
          const names = [claims.role, ...claims.roles, ...claims.groups].filter((n): n is string => !!n);
          const reachable = new Set(names.map((n) => (Object.hasOwn(mapping, n) ? mapping[n] : undefined)).filter(Boolean));
          if (result === 'owner') expect(reachable.has('owner')).toBe(true);
          expect(reachable.size === 0 ? result === defaultRole : reachable.has(result)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });
});
