import { Inject, Injectable, Logger } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { WorkOS } from '@workos-inc/node';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AppConfig } from '../../config/configuration.js';
import { AuditService } from '../audit/audit.service.js';
import { AuthService, emailDomain, IssuedToken } from '../auth/auth.service.js';
import { PlanLimits } from '../billing/plan-limits.js';
import { ValidationFailed } from '../http/domain-error.js';
import type { Actor } from '../lifecycle/actor.js';
import { recordPlatformEvent } from '../lifecycle/platform-audit.js';
import { RoutingTable } from '../tenancy/routing-table.service.js';
import { Queryable, TenantDirectory } from '../tenancy/tenant-directory.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { Role, TenantRoute } from '../tenancy/tenant-route.js';
import { TenancyError } from '../tenancy/tenancy.errors.js';
import { mapRole, RoleMappingPolicy } from './role-mapping.js';
import { SsoError } from './sso.errors.js';
import { requireWorkOS, WORKOS } from './workos.client.js';

export interface SsoLink {
  tenantId: string;
  organizationId: string;
  enforceSso: boolean;
  allowIdpInitiated: boolean;
  roleMapping: Record<string, Role>;
  defaultRole: Exclude<Role, 'owner'>;
  connectionState: 'none' | 'active' | 'inactive';
  directoryState: 'none' | 'active' | 'inactive';
}

export interface SsoDomain {
  domain: string;
  verified: boolean;
}

export interface SsoState {
  link: SsoLink | null;
  domains: SsoDomain[];
  /** False when WorkOS could not be asked just now: domains are as last known. */
  fresh: boolean;
}

export interface SsoSettings {
  enforceSso?: boolean;
  allowIdpInitiated?: boolean;
  roleMapping?: Record<string, Role>;
  defaultRole?: Exclude<Role, 'owner'>;
}

export interface SsoSignIn extends IssuedToken {
  tenant: { id: string; slug: string };
  role: Role;
}

interface LinkRow {
  tenant_id: string;
  workos_organization_id: string;
  enforce_sso: boolean;
  allow_idp_initiated: boolean;
  role_mapping: Record<string, Role>;
  default_role: Exclude<Role, 'owner'>;
  connection_state: SsoLink['connectionState'];
  directory_state: SsoLink['directoryState'];
}

const toLink = (r: LinkRow): SsoLink => ({
  tenantId: r.tenant_id,
  organizationId: r.workos_organization_id,
  enforceSso: r.enforce_sso,
  allowIdpInitiated: r.allow_idp_initiated,
  roleMapping: r.role_mapping,
  defaultRole: r.default_role,
  connectionState: r.connection_state,
  directoryState: r.directory_state,
});

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** What a WorkOS call's failure means to our caller, without WorkOS's internals. */
function providerError(err: unknown, action: string): never {
  const status = (err as { status?: number }).status;
  const message = (err as { message?: string }).message ?? 'unknown error';
  if (status === 409 || status === 422) throw new SsoError('SSO_ALREADY_LINKED', `WorkOS refused to ${action}: ${message}`);
  if (status === 404) throw new SsoError('SSO_NOT_LINKED', `WorkOS does not know it (${action})`);
  throw new SsoError('SSO_PROVIDER_ERROR', `WorkOS could not ${action} just now; retry shortly`, undefined, { 'retry-after': '5' });
}

/**
 * SAML sign-in through WorkOS for tenants that link their WorkOS organization: the link and its
 * settings, the sign-in (a signed, short-lived, single-use state; the code exchanged through the
 * SDK; the profile checked against the tenant's organization and verified domains), just-in-time
 * users and memberships with the tenant's role mapping, and a server-side session.
 */
@Injectable()
export class SsoService {
  private readonly logger = new Logger(SsoService.name);
  private readonly stateKey: Buffer;
  private readonly stateTtl: number;
  private readonly redirectUri: string;
  private readonly clientId?: string;

  constructor(
    @Inject(WORKOS) private readonly workos: WorkOS | null,
    private readonly pools: TenantPools,
    private readonly directory: TenantDirectory,
    private readonly routing: RoutingTable,
    private readonly auth: AuthService,
    private readonly audit: AuditService,
    private readonly limits: PlanLimits,
    config: ConfigService<AppConfig, true>,
  ) {
    const workosConfig = config.get('workos', { infer: true });
    // Its own key, derived from the token secret: a state can never pass for a token or back.
    this.stateKey = createHmac('sha256', config.get('auth', { infer: true }).jwtSecret!).update('sso-state/v1').digest();
    this.stateTtl = workosConfig.stateTtlSeconds;
    this.redirectUri = workosConfig.redirectUri;
    this.clientId = workosConfig.clientId;
  }

  // ---- the link and its settings (tenant owners and admins) ----

  async linkOf(tenantId: string, q: Queryable = this.pools.control()): Promise<SsoLink | null> {
    const rows = await q.query<LinkRow[]>('SELECT * FROM control.sso_links WHERE tenant_id = $1', [tenantId]);
    return rows.length ? toLink(rows[0]) : null;
  }

  async domainsOf(tenantId: string): Promise<SsoDomain[]> {
    return this.pools.control().query<SsoDomain[]>('SELECT domain, verified FROM control.sso_domains WHERE tenant_id = $1 ORDER BY domain', [tenantId]);
  }

  /**
   * Links the tenant to a WorkOS organization: an existing one by id, or a new one created with
   * the tenant's domains (pending until the customer's IT verifies them in the Admin Portal) and
   * the tenant id as its external id.
   */
  async link(tenant: TenantRoute, input: { organizationId?: string; domains?: string[] }, actor: Actor): Promise<SsoState> {
    const workos = requireWorkOS(this.workos);
    if (await this.linkOf(tenant.id)) throw new SsoError('SSO_ALREADY_LINKED', `tenant '${tenant.slug}' is linked to a WorkOS organization already`);
    const organization = input.organizationId
      ? await workos.organizations.getOrganization(input.organizationId).catch((err: unknown) => {
          if ((err as { status?: number }).status === 404) throw new ValidationFailed('workosOrganizationId', `WorkOS has no organization ${input.organizationId}`);
          providerError(err, 'find the organization');
        })
      : await workos.organizations
          .createOrganization(
            { name: tenant.name, externalId: tenant.id, domainData: (input.domains ?? []).map((domain) => ({ domain, state: 'pending' as never })) },
            { idempotencyKey: `tenant-link-${tenant.id}` },
          )
          .catch((err: unknown) => providerError(err, 'create the organization'));
    if (organization.externalId && organization.externalId !== tenant.id) {
      throw new ValidationFailed('workosOrganizationId', 'that WorkOS organization belongs to another tenant (its external id differs)');
    }
    try {
      await this.pools.control().transaction(async (m) => {
        await m.query('INSERT INTO control.sso_links (tenant_id, workos_organization_id) VALUES ($1, $2)', [tenant.id, organization.id]);
        await this.storeDomains(m, tenant.id, organization.domains);
        await recordPlatformEvent(m, {
          actorKind: actor.kind,
          actorId: actor.id,
          action: 'sso.linked',
          tenantId: tenant.id,
          targetType: 'workos_organization',
          targetId: organization.id,
          requestId: actor.requestId,
          metadata: { domains: organization.domains.map((d) => d.domain) },
        });
        await this.audit.enqueue(m, tenant.id, { actorKind: actor.kind === 'user' ? 'user' : 'system', actorId: actor.id, action: 'sso.linked', targetType: 'workos_organization', targetId: organization.id }, actor.requestId ? { id: actor.requestId } : undefined);
      });
    } catch (err) {
      if ((err as { driverError?: { code?: string } }).driverError?.code === '23505') {
        throw new SsoError('SSO_ALREADY_LINKED', 'that WorkOS organization, or one of its domains, is linked to another tenant already');
      }
      throw err;
    }
    await this.audit.deliver(tenant.id).catch(() => undefined); // queued: the sweeper retries
    return this.state(tenant);
  }

  /** The link, its settings and its domains, with domain verification refreshed from WorkOS. */
  async state(tenant: TenantRoute): Promise<SsoState> {
    const link = await this.linkOf(tenant.id);
    let fresh = true;
    if (link && this.workos) {
      try {
        const organization = await this.workos.organizations.getOrganization(link.organizationId);
        await this.pools.control().transaction((m) => this.storeDomains(m, tenant.id, organization.domains));
      } catch (err) {
        fresh = false;
        this.logger.warn({ tenantId: tenant.id, reason: (err as Error).message }, 'could not refresh SSO domains from WorkOS');
      }
    }
    return { link, domains: await this.domainsOf(tenant.id), fresh };
  }

  async updateSettings(tenant: TenantRoute, settings: SsoSettings, actor: Actor): Promise<SsoState> {
    const link = await this.linkOf(tenant.id);
    if (!link) throw new SsoError('SSO_NOT_LINKED', `tenant '${tenant.slug}' has no WorkOS organization linked; POST /orgs/${tenant.slug}/sso first`);
    await this.pools.control().transaction(async (m) => {
      await m.query(
        `UPDATE control.sso_links SET enforce_sso = coalesce($2, enforce_sso), allow_idp_initiated = coalesce($3, allow_idp_initiated),
                role_mapping = coalesce($4::jsonb, role_mapping), default_role = coalesce($5, default_role), updated_at = now()
          WHERE tenant_id = $1`,
        [tenant.id, settings.enforceSso ?? null, settings.allowIdpInitiated ?? null, settings.roleMapping ? JSON.stringify(settings.roleMapping) : null, settings.defaultRole ?? null],
      );
      await recordPlatformEvent(m, {
        actorKind: actor.kind,
        actorId: actor.id,
        action: 'sso.settings_changed',
        tenantId: tenant.id,
        targetType: 'sso_link',
        targetId: tenant.id,
        requestId: actor.requestId,
        metadata: { ...settings },
      });
      await this.audit.enqueue(
        m,
        tenant.id,
        { actorKind: actor.kind === 'user' ? 'user' : 'system', actorId: actor.id, action: 'sso.settings_changed', targetType: 'sso_link', targetId: tenant.id, metadata: { fields: Object.keys(settings).sort() } },
        actor.requestId ? { id: actor.requestId } : undefined,
      );
    });
    await this.audit.deliver(tenant.id).catch(() => undefined); // queued: the sweeper retries
    return this.state(tenant);
  }

  async portalLink(tenant: TenantRoute, intent: 'sso' | 'dsync'): Promise<string> {
    const workos = requireWorkOS(this.workos);
    const link = await this.linkOf(tenant.id);
    if (!link) throw new SsoError('SSO_NOT_LINKED', `tenant '${tenant.slug}' has no WorkOS organization linked; POST /orgs/${tenant.slug}/sso first`);
    const generated = await workos.adminPortal
      .generateLink({ organization: link.organizationId, intent: intent as never })
      .catch((err: unknown) => providerError(err, 'create an Admin Portal link'));
    return generated.link;
  }

  private async storeDomains(m: Queryable, tenantId: string, domains: Array<{ domain: string; state: string }>): Promise<void> {
    await m.query('DELETE FROM control.sso_domains WHERE tenant_id = $1 AND NOT (domain = ANY ($2::text[]))', [tenantId, domains.map((d) => d.domain.toLowerCase())]);
    for (const d of domains) {
      await m.query(
        `INSERT INTO control.sso_domains (domain, tenant_id, verified) VALUES ($1, $2, $3)
         ON CONFLICT (domain) DO UPDATE SET verified = EXCLUDED.verified, updated_at = now() WHERE sso_domains.tenant_id = EXCLUDED.tenant_id`,
        [d.domain.toLowerCase(), tenantId, d.state === 'verified'],
      );
    }
  }

  // ---- sign-in ----

  /** The WorkOS authorization URL for the tenant of an email's verified domain, or of a slug. */
  async authorizeUrl(by: { email?: string; org?: string }): Promise<string> {
    const workos = requireWorkOS(this.workos);
    const tenant = by.email ? await this.tenantOfDomain(emailDomain(by.email)) : await this.tenantOfSlug(by.org!);
    const link = await this.linkOf(tenant.id);
    if (!link) throw new SsoError('SSO_NOT_LINKED', `tenant '${tenant.slug}' does not sign in with SSO`, by.email ? 'email' : 'org');
    if (link.connectionState === 'inactive') {
      throw new SsoError('SSO_CONNECTION_INACTIVE', `the identity provider connection of '${tenant.slug}' is deactivated; its IT can reactivate it in the Admin Portal`);
    }
    return workos.sso.getAuthorizationUrl({
      organization: link.organizationId,
      clientId: this.clientId!,
      redirectUri: this.redirectUri,
      state: this.signState(tenant.id),
      ...(by.email ? { loginHint: by.email } : {}),
    });
  }

  private async tenantOfDomain(domain: string): Promise<TenantRoute> {
    const rows = await this.pools.control().query<Array<{ tenant_id: string }>>(
      'SELECT tenant_id FROM control.sso_domains WHERE domain = $1 AND verified',
      [domain],
    );
    const tenant = rows.length ? await this.directory.findTenant(rows[0].tenant_id) : null;
    if (!tenant) throw new SsoError('SSO_DOMAIN_NOT_FOUND', `no organization signs in with SSO for ${domain}`, 'email');
    return tenant;
  }

  private async tenantOfSlug(slug: string): Promise<TenantRoute> {
    const route = await this.routing.resolveSlug(slug);
    if (!route) throw new SsoError('SSO_NOT_LINKED', `tenant '${slug}' does not sign in with SSO`, 'org');
    return route;
  }

  /** `<payload>.<mac>`: the tenant, a nonce and an expiry, signed; consumed once by the callback. */
  signState(tenantId: string): string {
    const payload = b64url(JSON.stringify({ t: tenantId, n: randomBytes(16).toString('base64url'), e: Date.now() + this.stateTtl * 1000 }));
    return `${payload}.${b64url(createHmac('sha256', this.stateKey).update(payload).digest())}`;
  }

  private async consumeState(state: string): Promise<string> {
    const invalid = (why: string) => new SsoError('SSO_STATE_INVALID', `the sign-in state is ${why}; start the sign-in again`, 'state');
    const [payload, mac, extra] = state.split('.');
    if (!payload || !mac || extra !== undefined) throw invalid('malformed');
    const expected = createHmac('sha256', this.stateKey).update(payload).digest();
    const given = Buffer.from(mac, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalid('not ours');
    let claims: { t?: unknown; n?: unknown; e?: unknown };
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as typeof claims;
    } catch {
      throw invalid('malformed');
    }
    if (typeof claims.t !== 'string' || typeof claims.n !== 'string' || typeof claims.e !== 'number') throw invalid('malformed');
    if (claims.e < Date.now()) throw invalid('expired');
    const used = await this.pools.control().query<unknown[]>(
      `INSERT INTO control.sso_used_states (nonce, expires_at) VALUES ($1, to_timestamp($2 / 1000.0)) ON CONFLICT (nonce) DO NOTHING RETURNING nonce`,
      [claims.n, claims.e],
    );
    if (!used.length) throw invalid('already used');
    // Forget nonces that cannot come back (their state has expired anyway).
    void this.pools.control().query(`DELETE FROM control.sso_used_states WHERE expires_at < now() - interval '1 minute'`).catch(() => undefined);
    return claims.t;
  }

  /**
   * The callback: the code exchanged for a profile through the SDK, then checked and turned into
   * a membership and a session. Without a state (a sign-in started at the identity provider) it
   * is accepted only for a tenant that allows it.
   */
  async callback(code: string, state: string | undefined, requestId?: string): Promise<SsoSignIn> {
    const workos = requireWorkOS(this.workos);
    const stateTenant = state !== undefined ? await this.consumeState(state) : null;
    const { profile } = await workos.sso.getProfileAndToken({ code, clientId: this.clientId! }).catch((err: unknown) => {
      const status = (err as { status?: number }).status;
      if (status === 400 || status === 401 || (err as { name?: string }).name === 'OauthException') {
        throw new SsoError('SSO_CODE_INVALID', 'the sign-in code is invalid, used or expired; start the sign-in again', 'code');
      }
      providerError(err, 'complete the sign-in');
    });
    const link = await this.linkForSignIn(stateTenant, profile.organizationId);
    const tenant = await this.directory.findTenant(link.tenantId);
    if (!tenant) throw new SsoError('SSO_NOT_LINKED', 'the tenant of this sign-in no longer exists');
    if (tenant.status === 'suspended' || tenant.status === 'pending_deletion') {
      throw new TenancyError('TENANT_SUSPENDED', `tenant '${tenant.slug}' is ${tenant.status === 'suspended' ? 'suspended' : 'scheduled for deletion'}`);
    }
    const email = profile.email.trim().toLowerCase();
    const verified = await this.pools.control().query<unknown[]>(
      'SELECT 1 FROM control.sso_domains WHERE tenant_id = $1 AND domain = $2 AND verified',
      [tenant.id, emailDomain(email)],
    );
    if (!verified.length) {
      throw new SsoError('SSO_EMAIL_DOMAIN_NOT_ALLOWED', `${emailDomain(email)} is not a verified domain of '${tenant.slug}'; its IT can verify it in the Admin Portal`);
    }
    const policy: RoleMappingPolicy = { mapping: link.roleMapping, defaultRole: link.defaultRole };
    const claims = { role: profile.role?.slug ?? null, roles: (profile.roles ?? []).map((r) => r.slug), groups: profile.groups ?? [] };
    let role: Role = mapRole(policy, claims);
    const { person: user, joined } = await this.pools.control().transaction(async (m) => {
      const known = await m.query<Array<{ user_id: string; state: string; directory_user_id: string | null; idp_groups: string[] }>>(
        'SELECT user_id, state, directory_user_id, idp_groups FROM control.sso_identities WHERE workos_organization_id = $1 AND idp_id = $2 FOR UPDATE',
        [link.organizationId, profile.idpId],
      );
      const identity = known[0];
      // The directory has the last word on who works there: a sign-in does not undo a deprovisioning
      // (found by IdP id, or by email: the SAML and directory ids of one person may differ), and the
      // groups it syncs count together with the ones the SAML profile carries.
      const removed = await m.query<unknown[]>(
        `SELECT 1 FROM control.sso_identities i JOIN control.users u ON u.id = i.user_id
          WHERE i.tenant_id = $1 AND i.directory_user_id IS NOT NULL AND i.state <> 'active' AND lower(u.email) = $2`,
        [tenant.id, email],
      );
      if ((identity?.directory_user_id && identity.state !== 'active') || removed.length) {
        throw new SsoError('SSO_USER_DEPROVISIONED', `your company's directory has removed your access to '${tenant.slug}'`);
      }
      const groups = identity?.directory_user_id ? [...new Set([...identity.idp_groups, ...claims.groups])] : claims.groups;
      role = mapRole(policy, { ...claims, groups });
      const person = identity ? await this.userById(m, identity.user_id) : await this.directory.ensureUser(email, m);
      // A newcomer's membership, seat-checked under the tenant's seat lock in this transaction: a
      // sign-in refused for want of a seat leaves no user, identity or event behind.
      const joined = (await this.directory.addMember(tenant.id, person.id, role, this.limits.seatCheck(tenant.id), m)) !== null;
      await m.query(
        `INSERT INTO control.sso_identities (workos_organization_id, idp_id, tenant_id, user_id, idp_role, idp_groups, state)
         VALUES ($1, $2, $3, $4, $5, $6, 'active')
         ON CONFLICT (workos_organization_id, idp_id) DO UPDATE
           SET idp_role = EXCLUDED.idp_role, idp_groups = EXCLUDED.idp_groups, updated_at = now()`,
        [link.organizationId, profile.idpId, tenant.id, person.id, claims.role, groups],
      );
      await recordPlatformEvent(m, {
        actorKind: 'user',
        actorId: person.id,
        action: 'sso.signed_in',
        tenantId: tenant.id,
        targetType: 'user',
        targetId: person.id,
        requestId,
        metadata: { idpInitiated: state === undefined, role, connectionType: profile.connectionType },
      });
      return { person, joined };
    });
    let effective = role;
    if (joined) this.directory.forgetMembership(tenant.id, user.id);
    else effective = await this.applyRole(tenant.id, user.id, role);
    await this.audit.recordFor(
      tenant,
      { actorKind: 'identity_provider', actorId: user.id, action: 'sso.signed_in', targetType: 'user', targetId: user.id, metadata: { role: effective, idpInitiated: state === undefined } },
      requestId ? { id: requestId } : undefined,
    );
    const token = await this.auth.issue(user, 'sso', tenant.id);
    return { ...token, tenant: { id: tenant.id, slug: tenant.slug }, role: effective };
  }

  private async userById(q: Queryable, id: string): Promise<{ id: string; email: string; createdAt: Date }> {
    const rows = await q.query<Array<{ id: string; email: string; created_at: Date }>>('SELECT id, email, created_at FROM control.users WHERE id = $1', [id]);
    return { id: rows[0].id, email: rows[0].email, createdAt: rows[0].created_at };
  }

  /** The link a sign-in belongs to: the state's tenant (whose organization must be the profile's), or, IdP-initiated, the profile's organization's. */
  private async linkForSignIn(stateTenant: string | null, organizationId: string | undefined): Promise<SsoLink> {
    if (stateTenant) {
      const link = await this.linkOf(stateTenant);
      if (!link) throw new SsoError('SSO_NOT_LINKED', 'the tenant of this sign-in is no longer linked to WorkOS');
      if (organizationId !== link.organizationId) {
        throw new SsoError('SSO_ORGANIZATION_MISMATCH', "the identity provider's answer belongs to another organization than the tenant's; nothing was done");
      }
      return link;
    }
    const rows = organizationId ? await this.pools.control().query<LinkRow[]>('SELECT * FROM control.sso_links WHERE workos_organization_id = $1', [organizationId]) : [];
    if (!rows.length) throw new SsoError('SSO_STATE_INVALID', 'a sign-in without state must come from a linked organization', 'state');
    const link = toLink(rows[0]);
    if (!link.allowIdpInitiated) {
      throw new SsoError('SSO_IDP_INITIATED_NOT_ALLOWED', 'this organization accepts only sign-ins started here (GET /auth/sso/authorize), not at the identity provider');
    }
    return link;
  }

  /**
   * The mapped role becomes an existing member's. The last owner is never demoted by an identity
   * provider: the tenant would be left without one.
   */
  private async applyRole(tenantId: string, userId: string, role: Role): Promise<Role> {
    // An identity provider may make someone owner only where the mapping says so, and never
    // demotes an owner: otherwise an admin could demote owners by editing the mapping.
    const result = await this.directory.changeMember(tenantId, userId, { role }, role === 'owner');
    if (result === 'last_owner' || result === 'owner_restricted') {
      this.logger.warn({ tenantId, userId, role }, 'the identity provider maps an owner to a lower role; keeping owner');
      return 'owner';
    }
    return role;
  }
}
