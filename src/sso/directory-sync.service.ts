import { Injectable, Logger } from '@nestjs/common';
import type { DirectoryUser } from '@workos-inc/node';
import { emailDomain } from '../auth/auth.service.js';
import { SessionStore } from '../auth/session-store.service.js';
import type { Actor } from '../lifecycle/actor.js';
import { recordPlatformEvent } from '../lifecycle/platform-audit.js';
import { Queryable, TenantDirectory } from '../tenancy/tenant-directory.service.js';
import { AuditService } from '../audit/audit.service.js';
import { BillingError } from '../billing/billing.errors.js';
import { PlanLimits } from '../billing/plan-limits.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { Role, TenantStatus } from '../tenancy/tenant-route.js';
import { mapRole } from './role-mapping.js';
import { ClaimedEvent, WorkOSEventStore } from './workos-events.store.js';

/** How the platform audit log names directory sync. */
export const DIRECTORY_SYNC_ACTOR: Actor = { kind: 'system', id: 'workos-directory-sync' };

/** The events directory sync asks WorkOS for (reconciliation) and applies. */
export const DIRECTORY_EVENTS = [
  'dsync.user.created',
  'dsync.user.updated',
  'dsync.user.deleted',
  'dsync.group.user_added',
  'dsync.group.user_removed',
  'connection.activated',
  'connection.deactivated',
  'connection.deleted',
  'dsync.activated',
  'dsync.deleted',
  'organization_domain.verified',
  'organization_domain.verification_failed',
] as const;

export interface Outcome {
  status: 'processed' | 'ignored';
  /** Why it was ignored, or what is worth knowing about how it was applied. */
  note: string | null;
}

const ignored = (note: string): Outcome => ({ status: 'ignored', note });
const processed = (note: string | null = null): Outcome => ({ status: 'processed', note });

interface Link {
  tenantId: string;
  tenantStatus: TenantStatus;
  organizationId: string;
  mapping: Record<string, Role>;
  defaultRole: Exclude<Role, 'owner'>;
}

interface Identity {
  idpId: string;
  tenantId: string;
  userId: string;
  directoryUserId: string | null;
  groups: string[];
  state: 'active' | 'inactive' | 'deleted';
}

interface IdentityRow {
  workos_organization_id: string;
  idp_id: string;
  tenant_id: string;
  user_id: string;
  directory_user_id: string | null;
  idp_groups: string[];
  state: Identity['state'];
}

/** Where a directory user stands in the tenant: known (identity or email), foreign, or nobody here. */
type Person = { kind: 'known'; userId: string; identity: Identity | null } | { kind: 'refused'; note: string } | { kind: 'new'; email: string };

/** What a dsync.user.updated event changed (its previous_attributes), by name only: values may be personal. */
function changedAttributes(e: ClaimedEvent): { changedAttributes?: string[] } {
  const previous = (e.payload.data as { previousAttributes?: unknown } | undefined)?.previousAttributes;
  return previous && typeof previous === 'object' ? { changedAttributes: Object.keys(previous).sort() } : {};
}

const IDENTITY_COLUMNS = 'workos_organization_id, idp_id, tenant_id, user_id, directory_user_id, idp_groups, state';

/**
 * Applies WorkOS directory and connection events to the tenant linked to the event's
 * organization (control.sso_links), and to nothing else: people are found by their directory
 * user id, their IdP id in that organization, or an email on one of that tenant's verified
 * domains; every membership touched and every session revoked is that tenant's. Active directory
 * users become members with the mapped role; inactive or deleted ones lose the membership and
 * the sessions the tenant's IdP opened. Each change is in the platform audit log.
 *
 * Events of suspended (or deleted but restorable) tenants are applied too: the directory stays the
 * truth for when the tenant comes back, and a suspended tenant lets nobody in meanwhile.
 */
@Injectable()
export class DirectorySyncService {
  private readonly logger = new Logger(DirectorySyncService.name);

  constructor(
    private readonly pools: TenantPools,
    private readonly directory: TenantDirectory,
    private readonly sessions: SessionStore,
    private readonly store: WorkOSEventStore,
    private readonly tenantAudit: AuditService,
    private readonly limits: PlanLimits,
  ) {}

  async apply(e: ClaimedEvent): Promise<Outcome> {
    const p = e.payload;
    switch (p.event) {
      case 'dsync.user.created':
      case 'dsync.user.updated':
        return this.forPerson(e, p.data, (link, user) =>
          user.state === 'inactive' ? this.deprovision(e, link, user, 'inactive') : this.provision(e, link, user, null),
        );
      case 'dsync.user.deleted':
        return this.forPerson(e, p.data, (link, user) => this.deprovision(e, link, user, 'deleted'));
      case 'dsync.group.user_added':
      case 'dsync.group.user_removed': {
        const group = { name: p.data.group?.name, added: p.event === 'dsync.group.user_added' };
        if (typeof group.name !== 'string' || !group.name) return ignored('the group has no name');
        return this.forPerson(e, p.data.user, (link, user) => this.provision(e, link, user, group as { name: string; added: boolean }));
      }
      case 'connection.activated':
        return this.setLinkState(e, 'connection_state', 'active');
      case 'connection.deactivated':
        return this.setLinkState(e, 'connection_state', 'inactive');
      case 'connection.deleted':
        return this.setLinkState(e, 'connection_state', 'none');
      case 'dsync.activated':
        return this.setLinkState(e, 'directory_state', 'active');
      case 'dsync.deleted':
        return this.setLinkState(e, 'directory_state', 'none');
      case 'organization_domain.verified':
      case 'organization_domain.verification_failed':
        return this.setDomainState(e, p.data as { domain?: unknown }, p.event === 'organization_domain.verified');
      default:
        return ignored(`${p.event} is not used by directory sync`);
    }
  }

  private async linkOf(organizationId: string | null): Promise<Link | null> {
    if (!organizationId) return null;
    const rows = await this.pools.control().query<Array<{ tenant_id: string; status: TenantStatus; role_mapping: Record<string, Role>; default_role: Exclude<Role, 'owner'> }>>(
      `SELECT l.tenant_id, t.status, l.role_mapping, l.default_role
         FROM control.sso_links l JOIN control.tenants t ON t.id = l.tenant_id
        WHERE l.workos_organization_id = $1`,
      [organizationId],
    );
    if (!rows.length) return null;
    const r = rows[0];
    return { tenantId: r.tenant_id, tenantStatus: r.status, organizationId, mapping: r.role_mapping, defaultRole: r.default_role };
  }

  /** The checks every event about a person goes through before it may change anything. */
  private async forPerson(e: ClaimedEvent, user: DirectoryUser | undefined, apply: (link: Link, user: DirectoryUser) => Promise<Outcome>): Promise<Outcome> {
    if (!user || typeof user.id !== 'string' || typeof user.idpId !== 'string') return ignored('the event names no directory user');
    const link = await this.linkOf(e.organizationId);
    if (!link) return ignored(`organization ${e.organizationId ?? '(none)'} is not linked to a tenant`);
    if (link.tenantStatus === 'provisioning' || link.tenantStatus === 'failed') return ignored(`the tenant is ${link.tenantStatus}`);
    const newer = await this.store.supersededBy(e);
    if (newer) return ignored(`late: ${newer}`);
    return apply(link, user);
  }

  /**
   * The person a directory user is in this tenant. An identity of another organization or tenant
   * is never borrowed, and an email counts only on one of this tenant's verified domains: a
   * directory cannot hand a tenant somebody else's address.
   */
  private async personOf(link: Link, user: DirectoryUser): Promise<Person> {
    const control = this.pools.control();
    let rows = await control.query<IdentityRow[]>(`SELECT ${IDENTITY_COLUMNS} FROM control.sso_identities WHERE directory_user_id = $1`, [user.id]);
    if (!rows.length) {
      rows = await control.query<IdentityRow[]>(`SELECT ${IDENTITY_COLUMNS} FROM control.sso_identities WHERE workos_organization_id = $1 AND idp_id = $2`, [
        link.organizationId,
        user.idpId,
      ]);
    }
    if (rows.length) {
      const r = rows[0];
      if (r.workos_organization_id !== link.organizationId || r.tenant_id !== link.tenantId) {
        return { kind: 'refused', note: `directory user ${user.id} belongs to another organization` };
      }
      const identity: Identity = { idpId: r.idp_id, tenantId: r.tenant_id, userId: r.user_id, directoryUserId: r.directory_user_id, groups: r.idp_groups, state: r.state };
      return { kind: 'known', userId: r.user_id, identity };
    }
    const email = typeof user.email === 'string' ? user.email.trim().toLowerCase() : '';
    if (!email.includes('@')) return { kind: 'refused', note: `directory user ${user.id} has no email and is not known here` };
    const verified = await control.query<unknown[]>('SELECT 1 FROM control.sso_domains WHERE tenant_id = $1 AND domain = $2 AND verified', [link.tenantId, emailDomain(email)]);
    if (!verified.length) {
      this.logger.warn({ tenantId: link.tenantId, directoryUserId: user.id, domain: emailDomain(email) }, 'directory user ignored: email domain is not a verified domain of the tenant');
      return { kind: 'refused', note: `${emailDomain(email)} is not a verified domain of the tenant` };
    }
    const users = await control.query<Array<{ id: string }>>('SELECT id FROM control.users WHERE lower(email) = $1', [email]);
    return users.length ? { kind: 'known', userId: users[0].id, identity: null } : { kind: 'new', email };
  }

  /** Records what the directory says of the person (their identity in this organization). */
  private async saveIdentity(q: Queryable, link: Link, user: DirectoryUser, userId: string, previous: Identity | null, groups: string[], state: Identity['state']): Promise<void> {
    const role = user.role?.slug ?? null;
    if (previous) {
      await q.query(
        `UPDATE control.sso_identities SET idp_id = $3, directory_user_id = $4, idp_role = $5, idp_groups = $6, state = $7, updated_at = now()
          WHERE workos_organization_id = $1 AND idp_id = $2`,
        [link.organizationId, previous.idpId, user.idpId, user.id, role, groups, state],
      );
      return;
    }
    await q.query(
      `INSERT INTO control.sso_identities (workos_organization_id, idp_id, tenant_id, user_id, directory_user_id, idp_role, idp_groups, state)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (workos_organization_id, idp_id) DO UPDATE
         SET directory_user_id = EXCLUDED.directory_user_id, idp_role = EXCLUDED.idp_role, idp_groups = EXCLUDED.idp_groups,
             state = EXCLUDED.state, updated_at = now()`,
      [link.organizationId, user.idpId, link.tenantId, userId, user.id, role, groups, state],
    );
  }

  /**
   * An active directory user (created, updated, or added to or removed from a group): their
   * identity is recorded and their membership follows the role the tenant's mapping gives their
   * IdP role and groups (created just in time). An inactive user in a group event only has their
   * groups recorded.
   */
  private async provision(e: ClaimedEvent, link: Link, user: DirectoryUser, group: { name: string; added: boolean } | null): Promise<Outcome> {
    const person = await this.personOf(link, user);
    if (person.kind === 'refused') return ignored(person.note);
    const identity = person.kind === 'known' ? person.identity : null;
    if (identity?.state === 'deleted') return ignored(`directory user ${user.id} was deleted`);
    const groups = new Set(identity?.groups ?? []);
    if (group?.added) groups.add(group.name);
    if (group && !group.added) groups.delete(group.name);
    // Only user events bring a deprovisioned person back; a group event never does.
    const active = user.state !== 'inactive' && !(group && identity?.state === 'inactive');
    if (!active && person.kind !== 'known') return ignored(`directory user ${user.id} is inactive and not known here`);

    const userId = person.kind === 'known' ? person.userId : (await this.directory.ensureUser(person.email)).id;
    await this.saveIdentity(this.pools.control(), link, user, userId, identity, [...groups].sort(), active ? 'active' : identity!.state);
    if (!active) return processed('inactive: groups recorded, membership untouched');

    const role = mapRole(
      { mapping: link.mapping, defaultRole: link.defaultRole },
      { role: user.role?.slug ?? null, roles: (user.roles ?? []).map((r) => r.slug), groups: [...groups] },
    );
    const before = await this.directory.findMember(link.tenantId, userId);
    if (!before) {
      let added;
      try {
        added = await this.directory.addMember(link.tenantId, userId, role, this.limits.seatCheck(link.tenantId));
      } catch (err) {
        // Retrying would hold up the organization's queue until a seat frees up; the next event about them tries again.
        if (err instanceof BillingError && err.code === 'PLAN_LIMIT_REACHED') return ignored(`identity recorded, not made a member: ${err.message}`);
        throw err;
      }
      if (added) {
        await this.audit(e, link, userId, 'sso.directory_member_added', { directoryUserId: user.id, role, groups: [...groups] });
        return processed();
      }
    }
    if (before?.role === role) return processed();
    // The directory may make someone owner only where the mapping says so, and never demotes an
    // owner: otherwise an admin could demote owners by editing the mapping (owners are owners' call).
    const result = await this.directory.changeMember(link.tenantId, userId, { role }, role === 'owner');
    if (result === 'last_owner' || result === 'owner_restricted') {
      this.logger.warn({ tenantId: link.tenantId, userId, role }, 'the directory maps an owner to a lower role; keeping owner');
      return processed(`an owner keeps the owner role (the directory maps them to ${role})`);
    }
    if (result !== 'ok') return processed(`membership unchanged: ${result}`);
    await this.audit(e, link, userId, 'sso.directory_role_changed', { directoryUserId: user.id, from: before?.role ?? null, to: role, groups: [...groups] });
    return processed();
  }

  /**
   * Deprovisioning (a user deleted, or updated to inactive): the membership is removed and the
   * sessions the tenant's identity provider opened for them are revoked, so their next request
   * is refused. The tenant's last owner keeps the membership (a tenant always has an owner) but
   * loses the sessions all the same; the audit entry says so.
   */
  private async deprovision(e: ClaimedEvent, link: Link, user: DirectoryUser, reason: 'inactive' | 'deleted'): Promise<Outcome> {
    const person = await this.personOf(link, user);
    if (person.kind === 'refused') return ignored(person.note);
    if (person.kind === 'new') return ignored(`directory user ${user.id} is ${reason} and was never a member`);
    const groups = person.identity?.groups ?? [];
    await this.saveIdentity(this.pools.control(), link, user, person.userId, person.identity, groups, reason);
    const change = await this.directory.changeMember(link.tenantId, person.userId, 'remove', true);
    const sessionsRevoked = await this.sessions.revokeForTenant(link.tenantId, person.userId, `directory sync: user ${reason}`);
    const membership = change === 'ok' ? 'removed' : change === 'last_owner' ? 'kept_last_owner' : 'not_member';
    if (membership === 'not_member' && sessionsRevoked === 0) return processed();
    if (membership === 'kept_last_owner') {
      this.logger.warn({ tenantId: link.tenantId, userId: person.userId }, 'the directory deprovisioned the last owner: membership kept, sessions revoked');
    }
    await this.audit(e, link, person.userId, 'sso.directory_member_deprovisioned', { directoryUserId: user.id, reason, membership, sessionsRevoked });
    return processed(membership === 'kept_last_owner' ? 'the last owner keeps the membership; their sessions were revoked' : null);
  }

  /**
   * The customer's IT verified (or failed to verify) a domain in the Admin Portal: only verified
   * domains route sign-ins and enforce SSO. A domain another tenant holds stays that tenant's.
   */
  private async setDomainState(e: ClaimedEvent, data: { domain?: unknown }, verified: boolean): Promise<Outcome> {
    const link = await this.linkOf(e.organizationId);
    if (!link) return ignored(`organization ${e.organizationId ?? '(none)'} is not linked to a tenant`);
    if (typeof data.domain !== 'string' || !data.domain) return ignored('the event names no domain');
    const domain = data.domain.toLowerCase();
    return this.pools.control().transaction(async (m) => {
      const rows = await m.query<Array<{ domain: string }>>(
        `INSERT INTO control.sso_domains (domain, tenant_id, verified) VALUES ($1, $2, $3)
         ON CONFLICT (domain) DO UPDATE SET verified = EXCLUDED.verified, updated_at = now()
           WHERE sso_domains.tenant_id = EXCLUDED.tenant_id AND sso_domains.verified IS DISTINCT FROM EXCLUDED.verified
         RETURNING domain`,
        [domain, link.tenantId, verified],
      );
      if (!rows.length) return processed();
      await recordPlatformEvent(m, {
        actorKind: DIRECTORY_SYNC_ACTOR.kind,
        actorId: DIRECTORY_SYNC_ACTOR.id,
        action: 'sso.domain_verification_changed',
        tenantId: link.tenantId,
        targetType: 'domain',
        targetId: domain,
        metadata: { eventId: e.id, event: e.event, verified },
      });
      return processed();
    });
  }

  private async setLinkState(e: ClaimedEvent, column: 'connection_state' | 'directory_state', state: 'active' | 'inactive' | 'none'): Promise<Outcome> {
    const link = await this.linkOf(e.organizationId);
    if (!link) return ignored(`organization ${e.organizationId ?? '(none)'} is not linked to a tenant`);
    const newer = await this.store.supersededBy(e);
    if (newer) return ignored(`late: ${newer}`);
    return this.pools.control().transaction(async (m) => {
      const rows = await m.query<Array<{ before: string }>>(
        `WITH o AS (SELECT ${column} AS before FROM control.sso_links WHERE tenant_id = $1 FOR UPDATE),
              u AS (UPDATE control.sso_links SET ${column} = $2, updated_at = now() WHERE tenant_id = $1 AND (SELECT before FROM o) <> $2 RETURNING 1)
         SELECT (SELECT before FROM o) AS before FROM u`,
        [link.tenantId, state],
      );
      if (!rows.length) return processed();
      await recordPlatformEvent(m, {
        actorKind: DIRECTORY_SYNC_ACTOR.kind,
        actorId: DIRECTORY_SYNC_ACTOR.id,
        action: column === 'connection_state' ? 'sso.connection_state_changed' : 'sso.directory_state_changed',
        tenantId: link.tenantId,
        targetType: 'workos_organization',
        targetId: link.organizationId,
        metadata: { eventId: e.id, event: e.event, from: rows[0].before, to: state },
      });
      return processed();
    });
  }

  private async audit(e: ClaimedEvent, link: Link, userId: string, action: string, metadata: Record<string, unknown>): Promise<void> {
    await recordPlatformEvent(this.pools.control(), {
      actorKind: DIRECTORY_SYNC_ACTOR.kind,
      actorId: DIRECTORY_SYNC_ACTOR.id,
      action,
      tenantId: link.tenantId,
      targetType: 'user',
      targetId: userId,
      metadata: { eventId: e.id, event: e.event, organizationId: link.organizationId, ...metadata, ...changedAttributes(e) },
    });
    // The tenant's own log, when its placement can be reached (a suspended tenant's can).
    const route = await this.directory.findTenant(link.tenantId);
    if (route && (route.status === 'active' || route.status === 'suspended')) {
      await this.tenantAudit
        .recordFor(route, { actorKind: 'identity_provider', actorId: DIRECTORY_SYNC_ACTOR.id, action, targetType: 'user', targetId: userId, metadata: { eventId: e.id, ...metadata } })
        .catch((err: Error) => this.logger.warn({ tenantId: link.tenantId, eventId: e.id, reason: err.message }, "could not write the tenant's audit entry of a directory change"));
    }
  }
}
