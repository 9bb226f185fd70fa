/**
 * A local stand-in for the parts of the WorkOS API the product uses: organizations, the Admin
 * Portal link, SSO (authorize redirect + code exchange), the events API and signed webhooks.
 * It speaks WorkOS's wire shapes so the real `@workos-inc/node` SDK talks to it unchanged:
 *
 *   new WorkOS(apiKey, { apiHostname: '127.0.0.1', port, https: false, clientId, maxRetries: 0 })
 *
 * What a WorkOS dashboard or an identity provider would do (create a connection, verify a domain,
 * choose who signs in, provision directory users) is done through the control API under
 * `/_stand-in/…` (loopback only, no key), or the typed `WorkOSStandInClient` around it.
 *
 * Every answer is JSON (the portal page also renders HTML for a browser): the SDK turns a
 * non-JSON error body into a ParseError, which would hide the real error from the test.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  ConnectionType,
  OrganizationDomainState,
  OrganizationDomainVerificationStrategy,
  type ConnectionResponse,
  type DirectoryGroupResponse,
  type DirectoryType,
  type DirectoryUserResponse,
  type DirectoryUserWithGroupsResponse,
  type EventDirectoryResponse,
  type OrganizationDomainResponse,
  type OrganizationResponse,
  type ProfileAndTokenResponse,
  type ProfileResponse,
  type RoleResponse,
} from '@workos-inc/node';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

export interface WorkOSStandInOptions {
  /** The only API key accepted (`Authorization: Bearer …`, and `client_secret` on /sso/token). */
  apiKey: string;
  /** The only client id accepted by /sso/authorize and /sso/token. */
  clientId: string;
  /** Secret webhook deliveries are signed with; random when omitted. */
  webhookSecret?: string;
  /** Deliver every recorded event to this URL as it is recorded (also settable later). */
  webhookUrl?: string;
  /** 0 (default): any free port. */
  port?: number;
  host?: string;
  /** Redirect URIs /sso/authorize accepts (WorkOS checks the dashboard's list); any when omitted. */
  redirectUris?: string[];
  /** Lifetime of an authorization code; WorkOS's is 10 minutes. */
  codeTtlMs?: number;
  /** Extra automatic delivery attempts after a failed one (WorkOS retries 12 times over 3 days). */
  webhookRetries?: number;
  webhookRetryDelayMs?: number;
}

export type StandInProfile = ProfileResponse<Record<string, unknown>> & { object: 'profile' };
export type StandInDirectoryGroup = DirectoryGroupResponse & { object: 'directory_group' };

/** An event as GET /events returns it; webhooks carry `{ id, event, data, created_at }`. */
export interface StandInEvent {
  object: 'event';
  id: string;
  event: string;
  data: Record<string, any>;
  created_at: string;
}

/** Who a sign-in returns. Unset fields get WorkOS-like defaults. */
export interface ProfileInput {
  email: string;
  first_name?: string;
  last_name?: string;
  idp_id?: string;
  role?: RoleResponse;
  roles?: RoleResponse[];
  groups?: string[];
  custom_attributes?: Record<string, unknown>;
  raw_attributes?: Record<string, unknown>;
}

export interface DirectoryUserInput {
  email: string;
  first_name?: string;
  last_name?: string;
  idp_id?: string;
  state?: 'active' | 'inactive';
  role?: RoleResponse;
  roles?: RoleResponse[];
  custom_attributes?: Record<string, unknown>;
  raw_attributes?: Record<string, unknown>;
  /** Directory group ids to add the new user to (records dsync.group.user_added for each). */
  groups?: string[];
}

export type DirectoryUserChanges = Partial<Omit<DirectoryUserInput, 'groups' | 'idp_id'>>;

export interface WebhookDeliveryOptions {
  /** Default: the configured webhook URL. */
  url?: string;
  /** Default: the stand-in's webhook secret. Pass another to test rejection. */
  secret?: string;
  /** Signature timestamp in ms; default now. An old one tests the tolerance check. */
  timestampMs?: number;
  /** How many times to deliver the same event (duplicates test idempotency). */
  times?: number;
  /** true: send a body that differs from the signed one; a string: send exactly that body. */
  alterBody?: boolean | string;
}

export interface WebhookDelivery {
  event_id: string;
  event: string;
  url: string;
  attempt: number;
  automatic: boolean;
  status: number | null;
  ok: boolean;
  signature: string;
  error?: string;
  delivered_at: string;
}

export interface AuthorizeResult {
  status: number;
  location: string | null;
  code: string | null;
  state: string | null;
  error: string | null;
  errorDescription: string | null;
  /** The JSON body, when the stand-in answered with an error instead of a redirect. */
  body: unknown;
}

const PORTAL_INTENTS = [
  'sso',
  'dsync',
  'audit_logs',
  'log_streams',
  'domain_verification',
  'certificate_renewal',
  'bring_your_own_key',
] as const;
const OAUTH_PROVIDERS = ['GoogleOAuth', 'MicrosoftOAuth', 'GitHubOAuth', 'AppleOAuth'];
const CONNECTION_TYPES = new Set<string>(Object.values(ConnectionType));
const DEFAULT_CODE_TTL_MS = 10 * 60_000;
const PORTAL_LINK_TTL_MS = 5 * 60_000;
const DEFAULT_ROLE: RoleResponse = { slug: 'member' };
const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$/;

// ---------------------------------------------------------------------------------------------
// Webhook signatures
// ---------------------------------------------------------------------------------------------

/** The `WorkOS-Signature` header value for a raw body: `t=<ms>, v1=<hex HMAC-SHA256(t.body)>`. */
export function signWorkOSWebhook(body: string | Buffer, secret: string, timestampMs: number = Date.now()): string {
  const t = String(Math.trunc(timestampMs));
  const v1 = createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');
  return `t=${t}, v1=${v1}`;
}

// ---------------------------------------------------------------------------------------------
// Internals: ids, errors, replies
// ---------------------------------------------------------------------------------------------

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** WorkOS ids are `<prefix>_<ULID>`; monotonic here, so ids sort in creation order. */
class Ulids {
  private lastTime = -1;
  private last: number[] = [];

  next(nowMs: number): string {
    let time = Math.trunc(nowMs);
    if (time <= this.lastTime) {
      time = this.lastTime;
      let i = this.last.length - 1;
      while (i >= 0 && this.last[i] === 31) this.last[i--] = 0;
      if (i < 0) throw new Error('ULID randomness exhausted within one millisecond');
      this.last[i]++;
    } else {
      this.lastTime = time;
      this.last = Array.from(randomBytes(16), (b) => b & 31);
      this.last[0] &= 15; // headroom for increments
    }
    let head = '';
    for (let i = 0, n = time; i < 10; i++, n = Math.floor(n / 32)) head = CROCKFORD[n % 32] + head;
    return head + this.last.map((d) => CROCKFORD[d]).join('');
  }
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.message ?? body.error_description ?? body.error ?? status));
  }
}

const notFound = (entity: string, id: string) =>
  new ApiError(404, { message: `${entity} not found: '${id}'.`, code: 'entity_not_found', entity_id: id });
const invalid = (field: string, code: string, message = 'Validation failed') =>
  new ApiError(422, { message, code: 'invalid_request_parameters', errors: [{ field, code }] });
const conflict = (code: string, message: string) => new ApiError(409, { message, code });
const oauthError = (status: number, error: string, description: string) =>
  new ApiError(status, { error, error_description: description });

interface Reply {
  status: number;
  json?: unknown;
  html?: string;
  location?: string;
}

const ok = (json: unknown, status = 200): Reply => ({ status, json });

type Auth = 'api-key' | 'public' | 'loopback';

interface Ctx {
  req: IncomingMessage;
  url: URL;
  params: string[];
  raw: string;
}

interface Route {
  method: string;
  pattern: RegExp;
  auth: Auth;
  handler: (c: Ctx) => Reply | Promise<Reply>;
}

interface OrgRecord {
  id: string;
  name: string;
  external_id: string | null;
  metadata: Record<string, string>;
  allow_profiles_outside_organization: boolean;
  stripe_customer_id?: string;
  created_at: string;
  updated_at: string;
  domains: OrganizationDomainResponse[];
}

interface StoredEvent extends StandInEvent {
  organizationId: string | null;
}

interface AuthCode {
  code: string;
  clientId: string;
  redirectUri: string;
  profile: StandInProfile;
  expiresAt: number;
  codeChallenge: string | null;
}

interface PortalLink {
  token: string;
  organizationId: string;
  intent: string;
  returnUrl: string | null;
  successUrl: string | null;
  expiresAt: number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function optString(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(field, `${field}_must_be_a_string`);
  return v;
}

function reqString(body: Record<string, unknown>, field: string): string {
  const v = optString(body, field);
  if (v === undefined || v.trim() === '') throw invalid(field, `${field}_required`);
  return v;
}

function optRecord(body: Record<string, unknown>, field: string): Record<string, unknown> | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw invalid(field, `${field}_must_be_an_object`);
  return v;
}

function optRole(body: Record<string, unknown>, field: string): RoleResponse | undefined {
  const v = optRecord(body, field);
  if (v === undefined) return undefined;
  if (typeof v.slug !== 'string' || !v.slug) throw invalid(field, `${field}_slug_required`);
  return { slug: v.slug };
}

function optRoles(body: Record<string, unknown>, field: string): RoleResponse[] | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((r) => !isObject(r) || typeof r.slug !== 'string' || !r.slug)) {
    throw invalid(field, `${field}_must_be_a_list_of_roles`);
  }
  return v.map((r) => ({ slug: (r as { slug: string }).slug }));
}

function optStrings(body: Record<string, unknown>, field: string): string[] | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw invalid(field, `${field}_must_be_a_list_of_strings`);
  return v as string[];
}

function namesFromEmail(email: string): { first: string; last: string } {
  const parts = email.split('@')[0].split(/[._-]+/).filter(Boolean);
  const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
  return { first: cap(parts[0] ?? 'Sso'), last: cap(parts.slice(1).join(' ') || 'User') };
}

/** A stable IdP user id per email, as an IdP would keep one. */
function idpIdFor(email: string): string {
  return createHash('sha256').update(email.toLowerCase()).digest('hex').slice(0, 20);
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

class StandInServer {
  readonly webhookSecret: string;
  private readonly ulids = new Ulids();
  private readonly routes: Route[];
  private clockOffsetMs = 0;

  private orgs = new Map<string, OrgRecord>();
  private connections = new Map<string, ConnectionResponse>();
  private directories = new Map<string, EventDirectoryResponse>();
  private users = new Map<string, DirectoryUserResponse>();
  private groups = new Map<string, StandInDirectoryGroup>();
  private memberships = new Map<string, Set<string>>(); // group id -> user ids
  private events: StoredEvent[] = [];
  private codes = new Map<string, AuthCode>();
  private accessTokens = new Map<string, StandInProfile>();
  private portalLinks = new Map<string, PortalLink>();
  private profileQueues = new Map<string, ProfileInput[]>(); // org id or provider -> next sign-ins
  private defaultProfiles = new Map<string, ProfileInput>();
  private profileIds = new Map<string, string>(); // connection + idp id -> stable profile id
  private idempotent = new Map<string, string>(); // Idempotency-Key -> organization id
  private deliveries: WebhookDelivery[] = [];
  private webhookUrl: string | null;
  private deliveryChain: Promise<void> = Promise.resolve();
  private readonly abort = new AbortController();
  baseUrl = '';

  constructor(private readonly opts: WorkOSStandInOptions) {
    this.webhookSecret = opts.webhookSecret ?? `whsec_${randomBytes(18).toString('base64url')}`;
    this.webhookUrl = opts.webhookUrl ?? null;
    this.routes = this.buildRoutes();
  }

  // --- plumbing ----------------------------------------------------------------------------

  private now(): number {
    return Date.now() + this.clockOffsetMs;
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }

  private id(prefix: string): string {
    return `${prefix}_${this.ulids.next(this.now())}`;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = this.id('req');
    let reply: Reply;
    try {
      reply = await this.dispatch(req);
    } catch (err) {
      reply =
        err instanceof ApiError
          ? { status: err.status, json: err.body }
          : { status: 500, json: { message: `Stand-in failure: ${(err as Error).message}`, code: 'server_error' } };
    }
    const headers: Record<string, string> = { 'x-request-id': requestId, 'cache-control': 'no-store' };
    if (reply.location) headers.location = reply.location;
    let body: string;
    if (reply.html !== undefined) {
      headers['content-type'] = 'text/html; charset=utf-8';
      body = reply.html;
    } else {
      headers['content-type'] = 'application/json; charset=utf-8';
      body = JSON.stringify(reply.json ?? {});
    }
    res.writeHead(reply.status, headers).end(body);
  }

  private async dispatch(req: IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const method = req.method ?? 'GET';
    let pathMatched = false;
    for (const route of this.routes) {
      const m = route.pattern.exec(url.pathname);
      if (!m) continue;
      pathMatched = true;
      if (route.method !== method) continue;
      this.authorize(route.auth, req);
      let params: string[];
      try {
        params = m.slice(1).map((p) => decodeURIComponent(p));
      } catch {
        throw new ApiError(400, { message: 'Malformed path parameter', code: 'invalid_request' });
      }
      const raw = method === 'GET' || method === 'HEAD' ? '' : await readBody(req);
      return route.handler({ req, url, params, raw });
    }
    if (pathMatched) throw new ApiError(405, { message: `Method ${method} not allowed on ${url.pathname}`, code: 'method_not_allowed' });
    throw new ApiError(404, { message: `No route for ${method} ${url.pathname}`, code: 'not_found' });
  }

  private authorize(auth: Auth, req: IncomingMessage): void {
    if (auth === 'public') return;
    if (auth === 'loopback') {
      if (!isLoopback(req.socket.remoteAddress)) {
        throw new ApiError(403, { message: 'The stand-in control API answers loopback callers only', code: 'forbidden' });
      }
      return;
    }
    const header = req.headers.authorization ?? '';
    const token = /^Bearer\s+(.+)$/i.exec(header)?.[1]?.trim();
    if (token !== this.opts.apiKey) throw new ApiError(401, { message: 'Unauthorized', code: 'unauthorized' });
  }

  private json(c: Ctx): Record<string, unknown> {
    if (c.raw.trim() === '') return {};
    let parsed: unknown;
    try {
      parsed = JSON.parse(c.raw);
    } catch {
      throw new ApiError(400, { message: 'Problems parsing JSON', code: 'invalid_request_body' });
    }
    if (!isObject(parsed)) throw new ApiError(400, { message: 'The request body must be a JSON object', code: 'invalid_request_body' });
    return parsed;
  }

  private buildRoutes(): Route[] {
    const r = (method: string, path: string, auth: Auth, handler: Route['handler']): Route => ({
      method,
      pattern: new RegExp(`^${path.replace(/:[a-z_]+/g, '([^/]+)')}$`),
      auth,
      handler,
    });
    return [
      r('GET', '/', 'public', () => ok({ object: 'workos_stand_in', control: `${this.baseUrl}/_stand-in` })),
      // WorkOS API
      r('POST', '/organizations', 'api-key', (c) => this.createOrganization(c)),
      r('GET', '/organizations/external_id/:id', 'api-key', (c) => ok(this.orgJson(this.orgByExternalId(c.params[0])))),
      r('GET', '/organizations/:id', 'api-key', (c) => ok(this.orgJson(this.org(c.params[0])))),
      r('PUT', '/organizations/:id', 'api-key', (c) => this.updateOrganization(c)),
      r('DELETE', '/organizations/:id', 'api-key', (c) => this.deleteOrganization(c.params[0])),
      r('GET', '/organization_domains/:id', 'api-key', (c) => ok(this.domainById(c.params[0]).domain)),
      r('POST', '/organization_domains', 'api-key', (c) => this.createOrganizationDomain(c)),
      r('POST', '/organization_domains/:id/verify', 'api-key', (c) => ok(this.domainById(c.params[0]).domain)),
      r('GET', '/connections', 'api-key', (c) => this.listConnections(c)),
      r('GET', '/connections/:id', 'api-key', (c) => ok(this.connectionJson(this.connection(c.params[0])))),
      r('GET', '/directory_users/:id', 'api-key', (c) => ok(this.directoryUserWithGroups(this.directoryUser(c.params[0])))),
      r('GET', '/directory_groups/:id', 'api-key', (c) => ok(clone(this.directoryGroup(c.params[0])))),
      r('POST', '/portal/generate_link', 'api-key', (c) => this.generatePortalLink(c)),
      r('GET', '/portal/launch', 'public', (c) => this.portalPage(c)),
      r('GET', '/sso/authorize', 'public', (c) => this.ssoAuthorize(c)),
      r('POST', '/sso/token', 'public', (c) => this.ssoToken(c)),
      r('GET', '/sso/profile', 'public', (c) => this.ssoProfile(c)),
      r('GET', '/events', 'api-key', (c) => this.listEvents(c)),
      // Control API
      r('GET', '/_stand-in', 'loopback', () => ok({ object: 'workos_stand_in', help: standInCheatSheet(this.baseUrl, this.opts.apiKey) })),
      r('GET', '/_stand-in/state', 'loopback', () => ok(this.stateJson())),
      r('POST', '/_stand-in/reset', 'loopback', () => ok(this.reset())),
      r('POST', '/_stand-in/clock/advance', 'loopback', (c) => this.advanceClock(c)),
      r('POST', '/_stand-in/connections', 'loopback', (c) => this.createConnection(c)),
      r('POST', '/_stand-in/connections/:id/activate', 'loopback', (c) => this.setConnectionState(c.params[0], 'active')),
      r('POST', '/_stand-in/connections/:id/deactivate', 'loopback', (c) => this.setConnectionState(c.params[0], 'inactive')),
      r('DELETE', '/_stand-in/connections/:id', 'loopback', (c) => this.deleteConnection(c.params[0])),
      r('POST', '/_stand-in/organizations/:id/domains/verify', 'loopback', (c) => this.verifyDomain(c)),
      r('POST', '/_stand-in/organizations/:id/sso/profiles', 'loopback', (c) => this.queueProfiles(c)),
      r('PUT', '/_stand-in/organizations/:id/sso/default-profile', 'loopback', (c) => this.setDefaultProfile(c)),
      r('POST', '/_stand-in/organizations/:id/directory', 'loopback', (c) => this.createDirectory(c)),
      r('POST', '/_stand-in/directory_users', 'loopback', (c) => this.createDirectoryUser(c)),
      r('PATCH', '/_stand-in/directory_users/:id', 'loopback', (c) => this.updateDirectoryUser(c)),
      r('DELETE', '/_stand-in/directory_users/:id', 'loopback', (c) => this.deleteDirectoryUser(c.params[0])),
      r('POST', '/_stand-in/directory_groups', 'loopback', (c) => this.createDirectoryGroup(c)),
      r('DELETE', '/_stand-in/directory_groups/:id', 'loopback', (c) => this.deleteDirectoryGroup(c.params[0])),
      r('POST', '/_stand-in/directory_groups/:id/users', 'loopback', (c) => this.addGroupMember(c)),
      r('DELETE', '/_stand-in/directory_groups/:id/users/:user', 'loopback', (c) => this.removeGroupMember(c.params[0], c.params[1])),
      r('GET', '/_stand-in/events', 'loopback', (c) => this.recordedEvents(c)),
      r('POST', '/_stand-in/events/:id/deliver', 'loopback', (c) => this.deliverEvent(c)),
      r('PUT', '/_stand-in/webhook', 'loopback', (c) => this.setWebhook(c)),
      r('DELETE', '/_stand-in/webhook', 'loopback', () => ok(this.clearWebhook())),
      r('POST', '/_stand-in/webhook/settle', 'loopback', async () => ok(await this.settle())),
      r('GET', '/_stand-in/deliveries', 'loopback', () => ok({ object: 'list', data: clone(this.deliveries) })),
    ];
  }

  // --- lookups -------------------------------------------------------------------------------

  private org(id: string): OrgRecord {
    const org = this.orgs.get(id);
    if (!org) throw notFound('Organization', id);
    return org;
  }

  private orgByExternalId(externalId: string): OrgRecord {
    for (const org of this.orgs.values()) if (org.external_id === externalId) return org;
    throw notFound('Organization', externalId);
  }

  private connection(id: string): ConnectionResponse {
    const conn = this.connections.get(id);
    if (!conn) throw notFound('Connection', id);
    return conn;
  }

  private directoryUser(id: string): DirectoryUserResponse {
    const user = this.users.get(id);
    if (!user) throw notFound('DirectoryUser', id);
    return user;
  }

  private directoryGroup(id: string): StandInDirectoryGroup {
    const group = this.groups.get(id);
    if (!group) throw notFound('DirectoryGroup', id);
    return group;
  }

  private domainById(id: string): { org: OrgRecord; domain: OrganizationDomainResponse } {
    for (const org of this.orgs.values()) {
      const domain = org.domains.find((d) => d.id === id);
      if (domain) return { org, domain };
    }
    throw notFound('OrganizationDomain', id);
  }

  /** The organization that verified `domain`, other than `except`. */
  private verifiedElsewhere(domain: string, except: string | null): OrgRecord | undefined {
    for (const org of this.orgs.values()) {
      if (org.id === except) continue;
      if (org.domains.some((d) => d.domain === domain && d.state === OrganizationDomainState.Verified)) return org;
    }
    return undefined;
  }

  private activeConnectionOf(orgId: string): ConnectionResponse | undefined {
    for (const conn of this.connections.values()) if (conn.organization_id === orgId && conn.state === 'active') return conn;
    return undefined;
  }

  // --- serialization -------------------------------------------------------------------------

  private orgJson(o: OrgRecord): OrganizationResponse {
    return {
      object: 'organization',
      id: o.id,
      name: o.name,
      allow_profiles_outside_organization: o.allow_profiles_outside_organization,
      domains: clone(o.domains),
      ...(o.stripe_customer_id === undefined ? {} : { stripe_customer_id: o.stripe_customer_id }),
      created_at: o.created_at,
      updated_at: o.updated_at,
      external_id: o.external_id,
      metadata: { ...o.metadata },
    };
  }

  private connectionJson(c: ConnectionResponse): ConnectionResponse {
    const org = c.organization_id ? this.orgs.get(c.organization_id) : undefined;
    const domains = (org?.domains ?? []).map((d) => ({
      object: 'connection_domain' as const,
      id: d.id.replace(/^org_domain_/, 'conn_domain_'),
      domain: d.domain,
    }));
    return { ...clone(c), domains };
  }

  private directoryUserWithGroups(u: DirectoryUserResponse): DirectoryUserWithGroupsResponse {
    const groups = [...this.groups.values()].filter((g) => this.memberships.get(g.id)?.has(u.id));
    return { ...clone(u), groups: clone(groups) };
  }

  private eventJson(e: StoredEvent): StandInEvent {
    return { object: 'event', id: e.id, event: e.event, data: clone(e.data), created_at: e.created_at };
  }

  private stateJson() {
    return {
      organizations: [...this.orgs.values()].map((o) => this.orgJson(o)),
      connections: [...this.connections.values()].map((c) => this.connectionJson(c)),
      directories: clone([...this.directories.values()]),
      directory_users: [...this.users.values()].map((u) => this.directoryUserWithGroups(u)),
      directory_groups: clone([...this.groups.values()]),
      events: this.events.length,
      webhook: { url: this.webhookUrl },
      clock_offset_ms: this.clockOffsetMs,
    };
  }

  // --- events and webhooks -------------------------------------------------------------------

  private record(event: string, data: object, organizationId: string | null): StandInEvent {
    const stored: StoredEvent = {
      object: 'event',
      id: this.id('event'),
      event,
      data: clone(data) as Record<string, any>,
      created_at: this.iso(),
      organizationId,
    };
    this.events.push(stored);
    if (this.webhookUrl) this.autoDeliver(stored, this.webhookUrl);
    return this.eventJson(stored);
  }

  private autoDeliver(event: StoredEvent, url: string): void {
    const retries = Math.max(0, this.opts.webhookRetries ?? 0);
    const delay = this.opts.webhookRetryDelayMs ?? 250;
    // One at a time, in recording order, as a single WorkOS endpoint usually sees them.
    this.deliveryChain = this.deliveryChain.then(async () => {
      for (let attempt = 1; attempt <= retries + 1 && !this.abort.signal.aborted; attempt++) {
        const d = await this.deliverOnce(event, { url }, attempt, true);
        if (d.ok) return;
        if (attempt <= retries) await new Promise((res) => setTimeout(res, delay * attempt));
      }
    }).catch(() => undefined);
  }

  private async deliverOnce(event: StoredEvent, o: WebhookDeliveryOptions & { url: string }, attempt: number, automatic: boolean): Promise<WebhookDelivery> {
    const payload = { id: event.id, event: event.event, data: event.data, created_at: event.created_at };
    const signedBody = JSON.stringify(payload);
    const signature = signWorkOSWebhook(signedBody, o.secret ?? this.webhookSecret, o.timestampMs ?? Date.now());
    let sentBody = signedBody;
    if (typeof o.alterBody === 'string') sentBody = o.alterBody;
    else if (o.alterBody) sentBody = JSON.stringify({ ...payload, data: { ...payload.data, stand_in_tampered: true } });
    const delivery: WebhookDelivery = {
      event_id: event.id,
      event: event.event,
      url: o.url,
      attempt,
      automatic,
      status: null,
      ok: false,
      signature,
      delivered_at: new Date().toISOString(),
    };
    try {
      const res = await fetch(o.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'workos-signature': signature, 'user-agent': 'workos-stand-in' },
        body: sentBody,
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(10_000)]),
      });
      await res.arrayBuffer();
      delivery.status = res.status;
      delivery.ok = res.ok;
    } catch (err) {
      delivery.error = (err as Error).message;
    }
    this.deliveries.push(delivery);
    return delivery;
  }

  private async deliverEvent(c: Ctx): Promise<Reply> {
    const event = this.events.find((e) => e.id === c.params[0]);
    if (!event) throw notFound('Event', c.params[0]);
    const body = this.json(c);
    const url = optString(body, 'url') ?? this.webhookUrl;
    if (!url) throw invalid('url', 'url_required', 'No url given and no webhook configured');
    const secret = optString(body, 'secret');
    const times = body.times === undefined ? 1 : Number(body.times);
    if (!Number.isInteger(times) || times < 1 || times > 50) throw invalid('times', 'times_must_be_between_1_and_50');
    const timestampMs = body.timestamp_ms === undefined ? undefined : Number(body.timestamp_ms);
    if (timestampMs !== undefined && !Number.isFinite(timestampMs)) throw invalid('timestamp_ms', 'timestamp_ms_must_be_a_number');
    const alter = body.alter_body;
    if (alter !== undefined && typeof alter !== 'boolean' && typeof alter !== 'string') throw invalid('alter_body', 'alter_body_must_be_a_boolean_or_string');
    const out: WebhookDelivery[] = [];
    for (let i = 1; i <= times; i++) {
      out.push(await this.deliverOnce(event, { url, secret, timestampMs, alterBody: alter }, i, false));
    }
    return ok({ object: 'list', data: out });
  }

  private setWebhook(c: Ctx): Reply {
    const body = this.json(c);
    const url = reqString(body, 'url');
    try {
      new URL(url);
    } catch {
      throw invalid('url', 'url_invalid');
    }
    this.webhookUrl = url;
    return ok({ url, secret: this.webhookSecret });
  }

  private clearWebhook() {
    this.webhookUrl = null;
    return { url: null };
  }

  async settle(): Promise<{ pending: 0; deliveries: number }> {
    let chain: Promise<void>;
    do {
      chain = this.deliveryChain;
      await chain;
    } while (chain !== this.deliveryChain);
    return { pending: 0, deliveries: this.deliveries.length };
  }

  private listEvents(c: Ctx): Reply {
    const q = c.url.searchParams;
    const names = [...q.getAll('events'), ...q.getAll('events[]')]
      .flatMap((s) => s.split(','))
      .map((s) => s.trim())
      .filter(Boolean);
    const limit = q.has('limit') ? Number(q.get('limit')) : 10;
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw invalid('limit', 'limit_must_be_between_1_and_100');
    const order = q.get('order') ?? 'asc';
    if (!['asc', 'desc', 'normal'].includes(order)) throw invalid('order', 'order_must_be_asc_or_desc');
    const orgId = q.get('organization_id');
    const rangeStart = q.get('range_start');
    const rangeEnd = q.get('range_end');
    for (const [field, v] of [['range_start', rangeStart], ['range_end', rangeEnd]] as const) {
      if (v !== null && Number.isNaN(Date.parse(v))) throw invalid(field, `${field}_must_be_an_iso_8601_timestamp`);
    }
    let list = this.events.filter(
      (e) =>
        (names.length === 0 || names.includes(e.event)) &&
        (!orgId || e.organizationId === orgId) &&
        (!rangeStart || Date.parse(e.created_at) >= Date.parse(rangeStart)) &&
        (!rangeEnd || Date.parse(e.created_at) < Date.parse(rangeEnd)),
    );
    if (order !== 'asc') list = list.slice().reverse();
    const after = q.get('after');
    if (after) {
      // The cursor is an event id: it need not match the filter, only exist.
      const pos = this.events.findIndex((e) => e.id === after);
      if (pos < 0) throw invalid('after', 'after_must_be_an_event_id');
      list = list.filter((e) => (order === 'asc' ? e.id > after : e.id < after));
    }
    const page = list.slice(0, limit);
    // A stream cursor: the last event returned, or the caller's own when nothing is newer.
    const cursor = page.length ? page[page.length - 1].id : (after ?? null);
    return ok({ object: 'list', data: page.map((e) => this.eventJson(e)), list_metadata: { after: cursor } });
  }

  private recordedEvents(c: Ctx): Reply {
    const name = c.url.searchParams.get('event');
    const data = this.events.filter((e) => !name || e.event === name).map((e) => this.eventJson(e));
    return ok({ object: 'list', data });
  }

  // --- organizations -------------------------------------------------------------------------

  private parseDomainData(value: unknown, orgId: string | null): { domain: string; state: 'verified' | 'pending' }[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) throw invalid('domain_data', 'domain_data_must_be_an_array');
    const seen = new Set<string>();
    return value.map((item, i) => {
      if (!isObject(item) || typeof item.domain !== 'string') throw invalid(`domain_data[${i}].domain`, 'domain_required');
      const domain = item.domain.trim().toLowerCase();
      if (!DOMAIN.test(domain)) throw invalid(`domain_data[${i}].domain`, 'domain_invalid', `'${item.domain}' is not a valid domain.`);
      if (item.state !== 'verified' && item.state !== 'pending') throw invalid(`domain_data[${i}].state`, 'state_must_be_verified_or_pending');
      if (seen.has(domain)) throw invalid(`domain_data[${i}].domain`, 'domain_duplicated', `'${domain}' is listed twice.`);
      seen.add(domain);
      const owner = item.state === 'verified' ? this.verifiedElsewhere(domain, orgId) : undefined;
      if (owner) {
        throw conflict('domain_already_verified', `The domain '${domain}' is already verified by another organization.`);
      }
      return { domain, state: item.state };
    });
  }

  private newDomain(orgId: string, domain: string, state: 'verified' | 'pending'): OrganizationDomainResponse {
    const ts = this.iso();
    const verified = state === 'verified';
    return {
      object: 'organization_domain',
      id: this.id('org_domain'),
      organization_id: orgId,
      domain,
      state: verified ? OrganizationDomainState.Verified : OrganizationDomainState.Pending,
      verification_strategy: verified ? OrganizationDomainVerificationStrategy.Manual : OrganizationDomainVerificationStrategy.Dns,
      ...(verified ? {} : { verification_token: randomBytes(12).toString('base64url'), verification_prefix: 'workos-verification' }),
      created_at: ts,
      updated_at: ts,
    };
  }

  private parseMetadata(body: Record<string, unknown>): Record<string, string> | undefined {
    const meta = optRecord(body, 'metadata');
    if (meta === undefined) return undefined;
    if (Object.keys(meta).length > 50) throw invalid('metadata', 'metadata_too_many_keys');
    for (const [k, v] of Object.entries(meta)) {
      if (typeof v !== 'string') throw invalid(`metadata.${k}`, 'metadata_values_must_be_strings');
    }
    return meta as Record<string, string>;
  }

  private checkExternalId(externalId: string | null | undefined, orgId: string | null): void {
    if (!externalId) return;
    for (const org of this.orgs.values()) {
      if (org.id !== orgId && org.external_id === externalId) {
        throw conflict('external_id_already_assigned', `An organization with external_id '${externalId}' already exists.`);
      }
    }
  }

  private createOrganization(c: Ctx): Reply {
    // A retried POST with the same Idempotency-Key gets the first answer, not a 409.
    const key = c.req.headers['idempotency-key'];
    const seen = typeof key === 'string' ? this.idempotent.get(key) : undefined;
    if (seen) return ok(this.orgJson(this.org(seen)), 201);
    const body = this.json(c);
    const name = reqString(body, 'name').trim();
    const externalId = optString(body, 'external_id') ?? null;
    const metadata = this.parseMetadata(body) ?? {};
    const domainData = this.parseDomainData(body.domain_data, null);
    this.checkExternalId(externalId, null);
    const id = this.id('org');
    const ts = this.iso();
    const org: OrgRecord = {
      id,
      name,
      external_id: externalId,
      metadata,
      allow_profiles_outside_organization: body.allow_profiles_outside_organization === true,
      created_at: ts,
      updated_at: ts,
      domains: domainData.map((d) => this.newDomain(id, d.domain, d.state)),
    };
    this.orgs.set(id, org);
    if (typeof key === 'string') this.idempotent.set(key, id);
    this.record('organization.created', this.orgJson(org), id);
    return ok(this.orgJson(org), 201);
  }

  private updateOrganization(c: Ctx): Reply {
    const org = this.org(c.params[0]);
    const body = this.json(c);
    if ('name' in body) org.name = reqString(body, 'name').trim();
    if ('external_id' in body) {
      const externalId = optString(body, 'external_id') ?? null;
      this.checkExternalId(externalId, org.id);
      org.external_id = externalId;
    }
    const metadata = this.parseMetadata(body);
    if (metadata) org.metadata = metadata;
    if ('stripe_customer_id' in body) org.stripe_customer_id = optString(body, 'stripe_customer_id');
    if ('domain_data' in body && body.domain_data !== undefined) {
      const next = this.parseDomainData(body.domain_data, org.id);
      org.domains = next.map((d) => {
        const kept = org.domains.find((x) => x.domain === d.domain);
        if (!kept) return this.newDomain(org.id, d.domain, d.state);
        if (d.state === 'verified' && kept.state !== OrganizationDomainState.Verified) {
          return { ...this.newDomain(org.id, d.domain, 'verified'), id: kept.id, created_at: kept.created_at };
        }
        return kept;
      });
    }
    org.updated_at = this.iso();
    this.record('organization.updated', this.orgJson(org), org.id);
    return ok(this.orgJson(org));
  }

  private deleteOrganization(id: string): Reply {
    const org = this.org(id);
    this.orgs.delete(id);
    for (const conn of [...this.connections.values()]) if (conn.organization_id === id) this.connections.delete(conn.id);
    this.record('organization.deleted', this.orgJson(org), id);
    return ok({}, 202);
  }

  private createOrganizationDomain(c: Ctx): Reply {
    const body = this.json(c);
    const org = this.org(reqString(body, 'organization_id'));
    const domain = reqString(body, 'domain').trim().toLowerCase();
    if (!DOMAIN.test(domain)) throw invalid('domain', 'domain_invalid', `'${domain}' is not a valid domain.`);
    if (org.domains.some((d) => d.domain === domain)) throw conflict('domain_already_exists', `The domain '${domain}' already belongs to this organization.`);
    if (this.verifiedElsewhere(domain, org.id)) throw conflict('domain_already_verified', `The domain '${domain}' is already verified by another organization.`);
    const created = this.newDomain(org.id, domain, 'pending');
    org.domains.push(created);
    this.record('organization_domain.created', created, org.id);
    return ok(clone(created), 201);
  }

  private verifyDomain(c: Ctx): Reply {
    const org = this.org(c.params[0]);
    const name = reqString(this.json(c), 'domain').trim().toLowerCase();
    const index = org.domains.findIndex((d) => d.domain === name);
    if (index < 0) throw notFound('OrganizationDomain', name);
    if (this.verifiedElsewhere(name, org.id)) throw conflict('domain_already_verified', `The domain '${name}' is already verified by another organization.`);
    const current = org.domains[index];
    if (current.state !== OrganizationDomainState.Verified) {
      const { verification_token: _token, verification_prefix: _prefix, ...rest } = current;
      org.domains[index] = { ...rest, state: OrganizationDomainState.Verified, updated_at: this.iso() };
      this.record('organization_domain.verified', org.domains[index], org.id);
    }
    return ok(clone(org.domains[index]));
  }

  // --- admin portal --------------------------------------------------------------------------

  private generatePortalLink(c: Ctx): Reply {
    const body = this.json(c);
    const orgId = reqString(body, 'organization');
    const intent = optString(body, 'intent') ?? 'sso';
    if (!(PORTAL_INTENTS as readonly string[]).includes(intent)) {
      throw invalid('intent', 'intent_invalid', `intent must be one of ${PORTAL_INTENTS.join(', ')}.`);
    }
    const returnUrl = optString(body, 'return_url') ?? null;
    const successUrl = optString(body, 'success_url') ?? null;
    this.org(orgId);
    const token = randomBytes(24).toString('base64url');
    this.portalLinks.set(token, { token, organizationId: orgId, intent, returnUrl, successUrl, expiresAt: this.now() + PORTAL_LINK_TTL_MS });
    return ok({ link: `${this.baseUrl}/portal/launch?secret=${token}` }, 201);
  }

  private portalPage(c: Ctx): Reply {
    const token = c.url.searchParams.get('secret') ?? '';
    const link = this.portalLinks.get(token);
    if (!link || link.expiresAt < this.now()) {
      throw new ApiError(404, { message: 'This Admin Portal link is invalid or has expired (links last 5 minutes).', code: 'portal_link_invalid' });
    }
    const org = this.orgs.get(link.organizationId);
    if (!org) throw notFound('Organization', link.organizationId);
    const s = this.baseUrl;
    const steps: Record<string, string[]> = {
      sso: [
        `An IT admin of ${org.name} would set up a SAML or OIDC connection with their identity provider.`,
        `Stand-in: POST ${s}/_stand-in/connections {"organization_id":"${org.id}"} creates an active connection (connection.activated).`,
      ],
      dsync: [
        `An IT admin of ${org.name} would connect a SCIM directory so users and groups are provisioned.`,
        `Stand-in: POST ${s}/_stand-in/directory_users {"organization_id":"${org.id}","email":"…"} provisions a user (dsync.user.created).`,
      ],
      domain_verification: [
        `An IT admin of ${org.name} would prove domain ownership with a DNS TXT record.`,
        `Stand-in: POST ${s}/_stand-in/organizations/${org.id}/domains/verify {"domain":"…"} marks it verified.`,
      ],
    };
    const description = {
      object: 'stand_in_admin_portal',
      organization: this.orgJson(org),
      intent: link.intent,
      would: steps[link.intent] ?? [`The Admin Portal would open its ${link.intent} screen for ${org.name}.`],
      return_url: link.returnUrl,
      success_url: link.successUrl,
      expires_at: new Date(link.expiresAt).toISOString(),
    };
    if (!(c.req.headers.accept ?? '').includes('text/html')) return ok(description);
    const items = description.would.map((w) => `<li>${escapeHtml(w)}</li>`).join('');
    const back = link.returnUrl ? `<p><a href="${escapeHtml(link.returnUrl)}">Return to the app</a></p>` : '';
    const html = `<!doctype html><meta charset="utf-8"><title>Admin Portal (WorkOS stand-in)</title>
<h1>Admin Portal: ${escapeHtml(link.intent)}</h1><p>Organization <b>${escapeHtml(org.name)}</b> (${escapeHtml(org.id)})</p><ul>${items}</ul>${back}`;
    return { status: 200, html };
  }

  // --- connections ---------------------------------------------------------------------------

  private listConnections(c: Ctx): Reply {
    const q = c.url.searchParams;
    const orgId = q.get('organization_id');
    const type = q.get('connection_type');
    const domain = q.get('domain');
    const data = [...this.connections.values()]
      .map((conn) => this.connectionJson(conn))
      .filter((conn) => (!orgId || conn.organization_id === orgId) && (!type || conn.connection_type === type))
      .filter((conn) => !domain || conn.domains.some((d) => d.domain === domain));
    return ok({ object: 'list', data, list_metadata: { before: null, after: null } });
  }

  private createConnection(c: Ctx): Reply {
    const body = this.json(c);
    const org = this.org(reqString(body, 'organization_id'));
    const type = optString(body, 'connection_type') ?? 'GenericSAML';
    if (!CONNECTION_TYPES.has(type)) throw invalid('connection_type', 'connection_type_invalid');
    const state = optString(body, 'state') ?? 'active';
    if (!['active', 'inactive', 'draft'].includes(state)) throw invalid('state', 'state_must_be_active_inactive_or_draft');
    const ts = this.iso();
    const conn: ConnectionResponse = {
      object: 'connection',
      id: this.id('conn'),
      organization_id: org.id,
      name: optString(body, 'name') ?? org.name,
      connection_type: type as ConnectionType,
      state: state as ConnectionResponse['state'],
      domains: [],
      created_at: ts,
      updated_at: ts,
    };
    this.connections.set(conn.id, conn);
    const event = state === 'active' ? this.record('connection.activated', this.connectionJson(conn), org.id) : null;
    return ok({ connection: this.connectionJson(conn), event }, 201);
  }

  private setConnectionState(id: string, state: 'active' | 'inactive'): Reply {
    const conn = this.connection(id);
    if (conn.state === state) return ok({ connection: this.connectionJson(conn), event: null });
    conn.state = state;
    conn.updated_at = this.iso();
    const name = state === 'active' ? 'connection.activated' : 'connection.deactivated';
    const event = this.record(name, this.connectionJson(conn), conn.organization_id ?? null);
    return ok({ connection: this.connectionJson(conn), event });
  }

  private deleteConnection(id: string): Reply {
    const conn = this.connection(id);
    this.connections.delete(id);
    const event = this.record('connection.deleted', this.connectionJson(conn), conn.organization_id ?? null);
    return ok({ connection: this.connectionJson(conn), event });
  }

  // --- SSO -----------------------------------------------------------------------------------

  private parseProfileInput(body: Record<string, unknown>): ProfileInput {
    const email = reqString(body, 'email').trim();
    if (!email.includes('@')) throw invalid('email', 'email_invalid');
    return {
      email,
      first_name: optString(body, 'first_name'),
      last_name: optString(body, 'last_name'),
      idp_id: optString(body, 'idp_id'),
      role: optRole(body, 'role'),
      roles: optRoles(body, 'roles'),
      groups: optStrings(body, 'groups'),
      custom_attributes: optRecord(body, 'custom_attributes'),
      raw_attributes: optRecord(body, 'raw_attributes'),
    };
  }

  private profileKey(id: string): string {
    if (OAUTH_PROVIDERS.includes(id)) return `provider:${id}`;
    this.org(id);
    return id;
  }

  private queueProfiles(c: Ctx): Reply {
    const key = this.profileKey(c.params[0]);
    const body = this.json(c);
    const inputs = Array.isArray(body.profiles) ? body.profiles : [body];
    const parsed = inputs.map((p, i) => {
      if (!isObject(p)) throw invalid(`profiles[${i}]`, 'profile_must_be_an_object');
      return this.parseProfileInput(p);
    });
    const queue = this.profileQueues.get(key) ?? [];
    queue.push(...parsed);
    this.profileQueues.set(key, queue);
    return ok({ queued: queue.length });
  }

  private setDefaultProfile(c: Ctx): Reply {
    const key = this.profileKey(c.params[0]);
    const profile = this.parseProfileInput(this.json(c));
    this.defaultProfiles.set(key, profile);
    return ok({ default_profile: profile });
  }

  /** Who signs in: a queued profile (by login hint first), else the directory, else a default. */
  private chooseProfile(key: string, orgId: string | null, loginHint: string | null): ProfileInput | 'inactive' {
    const hint = loginHint?.trim().toLowerCase() || null;
    const queue = this.profileQueues.get(key) ?? [];
    const byHint = hint ? queue.findIndex((p) => p.email.toLowerCase() === hint) : -1;
    if (byHint >= 0) return queue.splice(byHint, 1)[0];
    // A login hint is only a hint: the IdP may sign in someone else, as a queued profile says.
    if (queue.length) return queue.shift()!;
    if (hint && orgId) {
      const user = [...this.users.values()].find((u) => u.organization_id === orgId && u.email?.toLowerCase() === hint);
      if (user) {
        // An identity provider refuses a suspended account.
        if (user.state !== 'active') return 'inactive';
        const groups = [...this.groups.values()].filter((g) => this.memberships.get(g.id)?.has(user.id)).map((g) => g.name);
        return {
          email: user.email ?? hint,
          first_name: user.first_name ?? undefined,
          last_name: user.last_name ?? undefined,
          idp_id: user.idp_id,
          role: user.role,
          roles: user.roles,
          groups,
          custom_attributes: user.custom_attributes,
        };
      }
    }
    const fallback = this.defaultProfiles.get(key);
    if (hint) return { ...(fallback && fallback.email.toLowerCase() === hint ? fallback : {}), email: hint };
    if (fallback) return fallback;
    const org = orgId ? this.orgs.get(orgId) : undefined;
    return { email: `sso.user@${org?.domains[0]?.domain ?? 'example.com'}` };
  }

  private buildProfile(input: ProfileInput, conn: ConnectionResponse): StandInProfile {
    const names = namesFromEmail(input.email);
    const idpId = input.idp_id ?? idpIdFor(input.email);
    const key = `${conn.id}:${idpId}`;
    let id = this.profileIds.get(key);
    if (!id) {
      id = this.id('prof');
      this.profileIds.set(key, id);
    }
    const role = input.role ?? input.roles?.[0] ?? DEFAULT_ROLE;
    const firstName = input.first_name ?? names.first;
    const lastName = input.last_name ?? names.last;
    const groups = input.groups ?? [];
    return {
      object: 'profile',
      id,
      idp_id: idpId,
      ...(conn.organization_id ? { organization_id: conn.organization_id } : {}),
      connection_id: conn.id,
      connection_type: conn.connection_type,
      email: input.email,
      first_name: firstName,
      last_name: lastName,
      role,
      roles: input.roles ?? [role],
      groups,
      custom_attributes: input.custom_attributes ?? {},
      raw_attributes: input.raw_attributes ?? { id: idpId, email: input.email, firstName, lastName, groups },
    };
  }

  private providerConnection(provider: string): ConnectionResponse {
    for (const conn of this.connections.values()) if (!conn.organization_id && conn.connection_type === provider) return conn;
    const ts = this.iso();
    const conn: ConnectionResponse = {
      object: 'connection',
      id: this.id('conn'),
      name: provider,
      connection_type: provider as ConnectionType,
      state: 'active',
      domains: [],
      created_at: ts,
      updated_at: ts,
    };
    this.connections.set(conn.id, conn);
    return conn;
  }

  private ssoAuthorize(c: Ctx): Reply {
    const q = c.url.searchParams;
    const clientId = q.get('client_id');
    if (clientId !== this.opts.clientId) throw oauthError(400, 'invalid_client', `Invalid client ID: '${clientId ?? ''}'.`);
    const redirectUri = q.get('redirect_uri');
    if (!redirectUri) throw oauthError(400, 'invalid_request', 'The redirect_uri parameter is required.');
    let redirect: URL;
    try {
      redirect = new URL(redirectUri);
    } catch {
      throw oauthError(400, 'invalid_redirect_uri', `'${redirectUri}' is not a valid URL.`);
    }
    if (this.opts.redirectUris && !this.opts.redirectUris.includes(redirectUri)) {
      throw oauthError(400, 'invalid_redirect_uri', `'${redirectUri}' is not an allowed redirect URI for this client.`);
    }
    const state = q.get('state');
    const fail = (error: string, description: string): Reply => {
      redirect.searchParams.set('error', error);
      redirect.searchParams.set('error_description', description);
      if (state !== null) redirect.searchParams.set('state', state);
      return { status: 302, location: redirect.toString(), json: { error, error_description: description, redirect: redirect.toString() } };
    };
    if (q.get('response_type') !== 'code') return fail('unsupported_response_type', "Only response_type 'code' is supported.");
    const selectors = (['organization', 'connection', 'provider'] as const).filter((k) => q.get(k));
    if (selectors.length !== 1) {
      return fail('invalid_connection_selector', 'Exactly one of connection, organization or provider must be provided.');
    }
    let conn: ConnectionResponse | undefined;
    let key: string;
    if (selectors[0] === 'organization') {
      const orgId = q.get('organization')!;
      if (!this.orgs.has(orgId)) return fail('organization_invalid', `No organization found with ID '${orgId}'.`);
      conn = this.activeConnectionOf(orgId);
      if (!conn) return fail('organization_invalid', 'No connection associated with organization');
      key = orgId;
    } else if (selectors[0] === 'connection') {
      const connId = q.get('connection')!;
      conn = this.connections.get(connId);
      if (!conn) return fail('connection_invalid', `No connection found with ID '${connId}'.`);
      if (conn.state !== 'active') return fail('connection_unlinked', 'The connection associated with the request is unlinked.');
      key = conn.organization_id ?? `provider:${conn.connection_type}`;
    } else {
      const provider = q.get('provider')!;
      if (!OAUTH_PROVIDERS.includes(provider)) return fail('invalid_connection_selector', `Unsupported provider '${provider}'.`);
      conn = this.providerConnection(provider);
      key = `provider:${provider}`;
    }
    const chosen = this.chooseProfile(key, conn.organization_id ?? null, q.get('login_hint'));
    if (chosen === 'inactive') return fail('access_denied', 'The identity provider refused the sign-in: the user is inactive.');
    const challenge = q.get('code_challenge');
    if (challenge && q.get('code_challenge_method') !== 'S256') return fail('invalid_request', "code_challenge_method must be 'S256'.");
    const code = this.ulids.next(this.now());
    this.codes.set(code, {
      code,
      clientId,
      redirectUri,
      profile: this.buildProfile(chosen, conn),
      expiresAt: this.now() + (this.opts.codeTtlMs ?? DEFAULT_CODE_TTL_MS),
      codeChallenge: challenge,
    });
    redirect.searchParams.set('code', code);
    if (state !== null) redirect.searchParams.set('state', state);
    return { status: 302, location: redirect.toString(), json: { redirect: redirect.toString() } };
  }

  private ssoToken(c: Ctx): Reply {
    const type = c.req.headers['content-type'] ?? '';
    const form: Record<string, unknown> = type.includes('application/x-www-form-urlencoded')
      ? Object.fromEntries(new URLSearchParams(c.raw))
      : this.json(c);
    const get = (k: string) => (typeof form[k] === 'string' ? (form[k] as string) : '');
    const clientId = get('client_id');
    if (!clientId) throw oauthError(400, 'invalid_request', 'The client_id parameter is required.');
    if (clientId !== this.opts.clientId) throw oauthError(400, 'invalid_client', `Invalid client ID: '${clientId}'.`);
    const secret = get('client_secret');
    const verifier = get('code_verifier');
    if (secret ? secret !== this.opts.apiKey : !verifier) {
      throw oauthError(401, 'invalid_client', 'Invalid client secret.');
    }
    const grant = get('grant_type');
    if (!grant) throw oauthError(400, 'invalid_request', 'The grant_type parameter is required.');
    if (grant !== 'authorization_code') throw oauthError(400, 'unsupported_grant_type', `The grant type is not supported: ${grant}`);
    const code = get('code');
    if (!code) throw oauthError(400, 'invalid_request', 'The code parameter is required.');
    const issued = this.codes.get(code);
    // One-time: a code is spent by any attempt to use it, as at WorkOS.
    this.codes.delete(code);
    const invalidGrant = () => oauthError(400, 'invalid_grant', `The code '${code}' has expired or is invalid.`);
    if (!issued || issued.expiresAt < this.now() || issued.clientId !== clientId) throw invalidGrant();
    if (issued.codeChallenge) {
      const computed = createHash('sha256').update(verifier).digest('base64url');
      if (!verifier || computed !== issued.codeChallenge) throw oauthError(400, 'invalid_grant', 'The code_verifier does not match the code_challenge.');
    } else if (!secret) {
      throw invalidGrant();
    }
    const accessToken = randomBytes(32).toString('base64url');
    this.accessTokens.set(accessToken, issued.profile);
    const response: ProfileAndTokenResponse<Record<string, unknown>> & { profile: StandInProfile } = {
      access_token: accessToken,
      profile: clone(issued.profile),
    };
    return ok(response);
  }

  private ssoProfile(c: Ctx): Reply {
    const token = /^Bearer\s+(.+)$/i.exec(c.req.headers.authorization ?? '')?.[1]?.trim() ?? '';
    const profile = this.accessTokens.get(token);
    if (!profile) throw new ApiError(401, { message: 'Unauthorized', code: 'unauthorized' });
    return ok(clone(profile));
  }

  // --- directory sync ------------------------------------------------------------------------

  private directoryOf(orgId: string): EventDirectoryResponse {
    for (const dir of this.directories.values()) if (dir.organization_id === orgId) return dir;
    return this.newDirectory(orgId, {});
  }

  private newDirectory(orgId: string, body: Record<string, unknown>): EventDirectoryResponse {
    const org = this.org(orgId);
    const ts = this.iso();
    const dir: EventDirectoryResponse = {
      object: 'directory',
      id: this.id('directory'),
      external_key: randomBytes(12).toString('base64url'),
      type: (optString(body, 'type') ?? 'okta scim v2.0') as DirectoryType,
      state: 'active',
      name: optString(body, 'name') ?? `${org.name} directory`,
      organization_id: org.id,
      domains: org.domains.map((d) => ({ object: 'organization_domain' as const, id: d.id, domain: d.domain })),
      created_at: ts,
      updated_at: ts,
    };
    this.directories.set(dir.id, dir);
    this.record('dsync.activated', dir, org.id);
    return dir;
  }

  private createDirectory(c: Ctx): Reply {
    const orgId = c.params[0];
    this.org(orgId);
    for (const dir of this.directories.values()) if (dir.organization_id === orgId) return ok({ directory: clone(dir) });
    return ok({ directory: clone(this.newDirectory(orgId, this.json(c))) }, 201);
  }

  private createDirectoryUser(c: Ctx): Reply {
    const body = this.json(c);
    const org = this.org(reqString(body, 'organization_id'));
    const email = reqString(body, 'email').trim();
    if (!email.includes('@')) throw invalid('email', 'email_invalid');
    const groupIds = optStrings(body, 'groups') ?? [];
    groupIds.forEach((g) => this.directoryGroup(g));
    const dir = this.directoryOf(org.id);
    for (const u of this.users.values()) {
      if (u.directory_id === dir.id && u.email?.toLowerCase() === email.toLowerCase()) {
        throw conflict('directory_user_exists', `A directory user with email '${email}' already exists in ${dir.id}.`);
      }
    }
    const state = optString(body, 'state') ?? 'active';
    if (state !== 'active' && state !== 'inactive') throw invalid('state', 'state_must_be_active_or_inactive');
    const names = namesFromEmail(email);
    const role = optRole(body, 'role') ?? optRoles(body, 'roles')?.[0] ?? DEFAULT_ROLE;
    const idpId = optString(body, 'idp_id') ?? idpIdFor(email);
    const firstName = optString(body, 'first_name') ?? names.first;
    const lastName = optString(body, 'last_name') ?? names.last;
    const ts = this.iso();
    const user: DirectoryUserResponse = {
      object: 'directory_user',
      id: this.id('directory_user'),
      directory_id: dir.id,
      organization_id: org.id,
      raw_attributes: optRecord(body, 'raw_attributes') ?? {
        id: idpId,
        userName: email,
        active: state === 'active',
        name: { givenName: firstName, familyName: lastName },
        emails: [{ primary: true, type: 'work', value: email }],
      },
      custom_attributes: optRecord(body, 'custom_attributes') ?? {},
      idp_id: idpId,
      first_name: firstName,
      email,
      last_name: lastName,
      state,
      role,
      roles: optRoles(body, 'roles') ?? [role],
      created_at: ts,
      updated_at: ts,
    };
    this.users.set(user.id, user);
    const event = this.record('dsync.user.created', user, org.id);
    const added = groupIds.map((g) => this.addMember(this.directoryGroup(g), user));
    return ok({ user: clone(user), event, group_events: added }, 201);
  }

  private updateDirectoryUser(c: Ctx): Reply {
    const user = this.directoryUser(c.params[0]);
    const body = this.json(c);
    const changes: Partial<DirectoryUserResponse> = {};
    if ('email' in body) changes.email = reqString(body, 'email').trim();
    if ('first_name' in body) changes.first_name = optString(body, 'first_name') ?? null;
    if ('last_name' in body) changes.last_name = optString(body, 'last_name') ?? null;
    if ('state' in body) {
      const state = optString(body, 'state');
      if (state !== 'active' && state !== 'inactive') throw invalid('state', 'state_must_be_active_or_inactive');
      changes.state = state;
    }
    if ('role' in body) changes.role = optRole(body, 'role');
    if ('roles' in body) changes.roles = optRoles(body, 'roles');
    if ('custom_attributes' in body) changes.custom_attributes = optRecord(body, 'custom_attributes') ?? {};
    if ('raw_attributes' in body) changes.raw_attributes = optRecord(body, 'raw_attributes') ?? {};
    const previous: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(changes)) {
      const before = (user as unknown as Record<string, unknown>)[k];
      if (JSON.stringify(before) !== JSON.stringify(v)) previous[k] = before ?? null;
    }
    if (Object.keys(previous).length === 0) return ok({ user: clone(user), event: null });
    Object.assign(user, changes);
    if ('state' in previous && isObject(user.raw_attributes) && 'active' in user.raw_attributes) {
      user.raw_attributes = { ...user.raw_attributes, active: user.state === 'active' };
    }
    user.updated_at = this.iso();
    const event = this.record('dsync.user.updated', { ...user, previous_attributes: previous }, user.organization_id);
    return ok({ user: clone(user), event });
  }

  private deleteDirectoryUser(id: string): Reply {
    const user = this.directoryUser(id);
    this.users.delete(id);
    for (const members of this.memberships.values()) members.delete(id);
    const gone = { ...user, state: 'inactive' as const, updated_at: this.iso() };
    const event = this.record('dsync.user.deleted', gone, user.organization_id);
    return ok({ user: clone(gone), event });
  }

  private createDirectoryGroup(c: Ctx): Reply {
    const body = this.json(c);
    const org = this.org(reqString(body, 'organization_id'));
    const name = reqString(body, 'name');
    const dir = this.directoryOf(org.id);
    const ts = this.iso();
    const idpId = optString(body, 'idp_id') ?? idpIdFor(`group:${dir.id}:${name}`);
    const group: StandInDirectoryGroup = {
      object: 'directory_group',
      id: this.id('directory_group'),
      idp_id: idpId,
      directory_id: dir.id,
      organization_id: org.id,
      name,
      created_at: ts,
      updated_at: ts,
      raw_attributes: optRecord(body, 'raw_attributes') ?? { id: idpId, displayName: name },
    };
    this.groups.set(group.id, group);
    this.memberships.set(group.id, new Set());
    const event = this.record('dsync.group.created', group, org.id);
    return ok({ group: clone(group), event }, 201);
  }

  private deleteDirectoryGroup(id: string): Reply {
    const group = this.directoryGroup(id);
    this.groups.delete(id);
    this.memberships.delete(id);
    const event = this.record('dsync.group.deleted', group, group.organization_id);
    return ok({ group: clone(group), event });
  }

  private addMember(group: StandInDirectoryGroup, user: DirectoryUserResponse): StandInEvent | null {
    const members = this.memberships.get(group.id)!;
    if (members.has(user.id)) return null;
    members.add(user.id);
    return this.record('dsync.group.user_added', { directory_id: group.directory_id, user, group }, group.organization_id);
  }

  private addGroupMember(c: Ctx): Reply {
    const group = this.directoryGroup(c.params[0]);
    const user = this.directoryUser(reqString(this.json(c), 'user_id'));
    if (user.directory_id !== group.directory_id) throw invalid('user_id', 'user_not_in_group_directory');
    return ok({ event: this.addMember(group, user) });
  }

  private removeGroupMember(groupId: string, userId: string): Reply {
    const group = this.directoryGroup(groupId);
    const user = this.directoryUser(userId);
    const members = this.memberships.get(group.id)!;
    if (!members.delete(user.id)) return ok({ event: null });
    const event = this.record('dsync.group.user_removed', { directory_id: group.directory_id, user, group }, group.organization_id);
    return ok({ event });
  }

  // --- misc control --------------------------------------------------------------------------

  private advanceClock(c: Ctx): Reply {
    const ms = Number(this.json(c).ms);
    if (!Number.isFinite(ms) || ms < 0) throw invalid('ms', 'ms_must_be_a_non_negative_number');
    this.clockOffsetMs += ms;
    return ok({ clock_offset_ms: this.clockOffsetMs, now: this.iso() });
  }

  private reset() {
    this.orgs.clear();
    this.connections.clear();
    this.directories.clear();
    this.users.clear();
    this.groups.clear();
    this.memberships.clear();
    this.events = [];
    this.codes.clear();
    this.accessTokens.clear();
    this.portalLinks.clear();
    this.profileQueues.clear();
    this.defaultProfiles.clear();
    this.profileIds.clear();
    this.idempotent.clear();
    this.deliveries = [];
    this.clockOffsetMs = 0;
    return { reset: true };
  }

  stopDeliveries(): void {
    this.abort.abort();
  }
}

async function readBody(req: IncomingMessage, limit = 1_000_000): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new ApiError(413, { message: 'Request body too large', code: 'payload_too_large' });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// Typed control client
// ---------------------------------------------------------------------------------------------

export class WorkOSStandInError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`WorkOS stand-in control API answered ${status}: ${JSON.stringify(body)}`);
    this.name = 'WorkOSStandInError';
  }
}

/** Control calls answer with the entity and the event it recorded (null: nothing changed). */
export interface DirectoryUserResult {
  user: DirectoryUserResponse;
  event: StandInEvent | null;
}
export interface DirectoryGroupResult {
  group: StandInDirectoryGroup;
  event: StandInEvent | null;
}
export interface ConnectionResult {
  connection: ConnectionResponse;
  event: StandInEvent | null;
}

/** The control API over HTTP; works for a stand-in in this process or another one. */
export class WorkOSStandInClient {
  constructor(readonly url: string) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.url}/_stand-in${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const json: unknown = text ? JSON.parse(text) : undefined;
    if (!res.ok) throw new WorkOSStandInError(res.status, json);
    return json as T;
  }

  /** A connection for the organization, active unless told otherwise (records connection.activated). */
  createConnection(organizationId: string, o: { connectionType?: string; name?: string; state?: 'active' | 'inactive' | 'draft' } = {}) {
    return this.call<ConnectionResult>('POST', '/connections', {
      organization_id: organizationId,
      connection_type: o.connectionType,
      name: o.name,
      state: o.state,
    });
  }

  activateConnection(id: string) {
    return this.call<ConnectionResult>('POST', `/connections/${encodeURIComponent(id)}/activate`);
  }

  deactivateConnection(id: string) {
    return this.call<ConnectionResult>('POST', `/connections/${encodeURIComponent(id)}/deactivate`);
  }

  deleteConnection(id: string) {
    return this.call<ConnectionResult>('DELETE', `/connections/${encodeURIComponent(id)}`);
  }

  verifyDomain(organizationId: string, domain: string) {
    return this.call<OrganizationDomainResponse>('POST', `/organizations/${encodeURIComponent(organizationId)}/domains/verify`, { domain });
  }

  /** Profiles the next sign-ins of the organization (or OAuth provider) return, in order. */
  queueProfiles(organizationId: string, ...profiles: ProfileInput[]) {
    return this.call<{ queued: number }>('POST', `/organizations/${encodeURIComponent(organizationId)}/sso/profiles`, { profiles });
  }

  setDefaultProfile(organizationId: string, profile: ProfileInput) {
    return this.call<{ default_profile: ProfileInput }>('PUT', `/organizations/${encodeURIComponent(organizationId)}/sso/default-profile`, profile);
  }

  createDirectory(organizationId: string, o: { name?: string; type?: DirectoryType } = {}) {
    return this.call<{ directory: EventDirectoryResponse }>('POST', `/organizations/${encodeURIComponent(organizationId)}/directory`, o);
  }

  createDirectoryUser(organizationId: string, user: DirectoryUserInput) {
    return this.call<DirectoryUserResult & { group_events: (StandInEvent | null)[] }>('POST', '/directory_users', {
      organization_id: organizationId,
      ...user,
    });
  }

  updateDirectoryUser(id: string, changes: DirectoryUserChanges) {
    return this.call<DirectoryUserResult>('PATCH', `/directory_users/${encodeURIComponent(id)}`, changes);
  }

  /** What an IdP sends when an account is suspended: dsync.user.updated with state inactive. */
  suspendDirectoryUser(id: string) {
    return this.updateDirectoryUser(id, { state: 'inactive' });
  }

  deleteDirectoryUser(id: string) {
    return this.call<DirectoryUserResult>('DELETE', `/directory_users/${encodeURIComponent(id)}`);
  }

  createDirectoryGroup(organizationId: string, o: { name: string; idpId?: string }) {
    return this.call<DirectoryGroupResult>('POST', '/directory_groups', { organization_id: organizationId, name: o.name, idp_id: o.idpId });
  }

  deleteDirectoryGroup(id: string) {
    return this.call<DirectoryGroupResult>('DELETE', `/directory_groups/${encodeURIComponent(id)}`);
  }

  addUserToGroup(groupId: string, userId: string) {
    return this.call<{ event: StandInEvent | null }>('POST', `/directory_groups/${encodeURIComponent(groupId)}/users`, { user_id: userId });
  }

  removeUserFromGroup(groupId: string, userId: string) {
    return this.call<{ event: StandInEvent | null }>(
      'DELETE',
      `/directory_groups/${encodeURIComponent(groupId)}/users/${encodeURIComponent(userId)}`,
    );
  }

  /** Every recorded event, oldest first (optionally one type). */
  async events(event?: string): Promise<StandInEvent[]> {
    const q = event ? `?event=${encodeURIComponent(event)}` : '';
    return (await this.call<{ data: StandInEvent[] }>('GET', `/events${q}`)).data;
  }

  /** From now on every recorded event is POSTed, signed, to `url`. */
  setWebhook(url: string) {
    return this.call<{ url: string; secret: string }>('PUT', '/webhook', { url });
  }

  clearWebhook() {
    return this.call<{ url: null }>('DELETE', '/webhook');
  }

  /** Deliver a recorded event now: repeatedly, or with a wrong secret, stale timestamp, altered body. */
  async deliver(eventId: string, o: WebhookDeliveryOptions = {}): Promise<WebhookDelivery[]> {
    const body = { url: o.url, secret: o.secret, timestamp_ms: o.timestampMs, times: o.times, alter_body: o.alterBody };
    return (await this.call<{ data: WebhookDelivery[] }>('POST', `/events/${encodeURIComponent(eventId)}/deliver`, body)).data;
  }

  async deliveries(): Promise<WebhookDelivery[]> {
    return (await this.call<{ data: WebhookDelivery[] }>('GET', '/deliveries')).data;
  }

  /** Resolves once every automatic delivery recorded so far has been attempted. */
  async settle(): Promise<void> {
    await this.call('POST', '/webhook/settle');
  }

  /** Moves the stand-in's clock forward (expires codes and portal links). */
  advanceClock(ms: number) {
    return this.call<{ clock_offset_ms: number }>('POST', '/clock/advance', { ms });
  }

  state() {
    return this.call<Record<string, unknown>>('GET', '/state');
  }

  reset() {
    return this.call<{ reset: true }>('POST', '/reset');
  }

  /** What a browser does with an authorization URL: one request, redirect not followed. */
  async authorize(authorizationUrl: string): Promise<AuthorizeResult> {
    const res = await fetch(authorizationUrl, { redirect: 'manual' });
    const text = await res.text();
    const location = res.headers.get('location');
    const params = location ? new URL(location).searchParams : null;
    return {
      status: res.status,
      location,
      code: params?.get('code') ?? null,
      state: params?.get('state') ?? null,
      error: params?.get('error') ?? null,
      errorDescription: params?.get('error_description') ?? null,
      body: text ? (JSON.parse(text) as unknown) : undefined,
    };
  }
}

export interface WorkOSStandIn extends WorkOSStandInClient {
  readonly host: string;
  readonly port: number;
  readonly apiKey: string;
  readonly clientId: string;
  readonly webhookSecret: string;
  /** Options for `new WorkOS(apiKey, options)` pointing at this stand-in. */
  readonly sdkOptions: { apiHostname: string; port: number; https: false; clientId: string; maxRetries: 0 };
  /** The variables an app reads to talk to this stand-in. */
  readonly env: { WORKOS_API_KEY: string; WORKOS_CLIENT_ID: string; WORKOS_API_HOST: string; WORKOS_WEBHOOK_SECRET: string };
  stop(): Promise<void>;
}

class RunningStandIn extends WorkOSStandInClient implements WorkOSStandIn {
  constructor(
    readonly host: string,
    readonly port: number,
    readonly apiKey: string,
    readonly clientId: string,
    readonly webhookSecret: string,
    private readonly server: Server,
    private readonly core: StandInServer,
  ) {
    super(`http://${host.includes(':') ? `[${host}]` : host}:${port}`);
  }

  get sdkOptions() {
    return { apiHostname: this.host, port: this.port, https: false as const, clientId: this.clientId, maxRetries: 0 as const };
  }

  get env() {
    return {
      WORKOS_API_KEY: this.apiKey,
      WORKOS_CLIENT_ID: this.clientId,
      WORKOS_API_HOST: `${this.host}:${this.port}`,
      WORKOS_WEBHOOK_SECRET: this.webhookSecret,
    };
  }

  async stop(): Promise<void> {
    this.core.stopDeliveries();
    await new Promise<void>((resolve, reject) => {
      this.server.close((err) => (err ? reject(err) : resolve()));
      this.server.closeAllConnections();
    });
  }
}

/** Starts a stand-in on loopback (a free port unless `port` is given). */
export async function startWorkOSStandIn(options: WorkOSStandInOptions): Promise<WorkOSStandIn> {
  if (!options.apiKey) throw new Error('startWorkOSStandIn: apiKey is required');
  if (!options.clientId) throw new Error('startWorkOSStandIn: clientId is required');
  const host = options.host ?? '127.0.0.1';
  const core = new StandInServer(options);
  const server = createServer((req, res) => {
    core.handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: err.message, code: 'server_error' }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const standIn = new RunningStandIn(host, port, options.apiKey, options.clientId, core.webhookSecret, server, core);
  core.baseUrl = standIn.url;
  return standIn;
}

/** A client for a stand-in started elsewhere (e.g. `npm run workos:stand-in`). */
export function connectWorkOSStandIn(url: string): WorkOSStandInClient {
  return new WorkOSStandInClient(url.replace(/\/+$/, ''));
}

/** curl commands for the control API, for `GET /_stand-in` and the dev launcher. */
export function standInCheatSheet(url: string, apiKey: string): string[] {
  const j = `-H 'content-type: application/json'`;
  return [
    `# an organization (WorkOS API, needs the key)`,
    `curl -s -X POST ${url}/organizations -H 'Authorization: Bearer ${apiKey}' ${j} -d '{"name":"Acme","domain_data":[{"domain":"acme.test","state":"verified"}],"external_id":"acme"}'`,
    `# an active SSO connection for it (records connection.activated)`,
    `curl -s -X POST ${url}/_stand-in/connections ${j} -d '{"organization_id":"ORG_ID"}'`,
    `curl -s -X POST ${url}/_stand-in/connections/CONN_ID/deactivate`,
    `# mark a domain verified`,
    `curl -s -X POST ${url}/_stand-in/organizations/ORG_ID/domains/verify ${j} -d '{"domain":"acme.test"}'`,
    `# who the next sign-in returns (else: the directory user with the login_hint email, else a default)`,
    `curl -s -X POST ${url}/_stand-in/organizations/ORG_ID/sso/profiles ${j} -d '{"email":"ada@acme.test","first_name":"Ada","last_name":"Lovelace","role":{"slug":"admin"}}'`,
    `# deliver events to the app as WorkOS webhooks (signed with WORKOS_WEBHOOK_SECRET)`,
    `curl -s -X PUT ${url}/_stand-in/webhook ${j} -d '{"url":"http://127.0.0.1:3000/webhooks/workos"}'`,
    `# directory sync: provision, suspend, delete (dsync.user.created / updated / deleted)`,
    `curl -s -X POST ${url}/_stand-in/directory_users ${j} -d '{"organization_id":"ORG_ID","email":"ada@acme.test","role":{"slug":"admin"}}'`,
    `curl -s -X PATCH ${url}/_stand-in/directory_users/USER_ID ${j} -d '{"state":"inactive"}'`,
    `curl -s -X DELETE ${url}/_stand-in/directory_users/USER_ID`,
    `curl -s -X POST ${url}/_stand-in/directory_groups ${j} -d '{"organization_id":"ORG_ID","name":"Engineering"}'`,
    `curl -s -X POST ${url}/_stand-in/directory_groups/GROUP_ID/users ${j} -d '{"user_id":"USER_ID"}'`,
    `# redeliver an event: 3 times, or with a wrong secret / stale timestamp / altered body`,
    `curl -s -X POST ${url}/_stand-in/events/EVENT_ID/deliver ${j} -d '{"times":3}'`,
    `curl -s -X POST ${url}/_stand-in/events/EVENT_ID/deliver ${j} -d '{"secret":"wrong"}'`,
    `# inspect`,
    `curl -s '${url}/events?events=dsync.user.created,dsync.user.updated,dsync.user.deleted&limit=10' -H 'Authorization: Bearer ${apiKey}'`,
    `curl -s ${url}/_stand-in/state`,
    `curl -s ${url}/_stand-in/deliveries`,
    `curl -s -X POST ${url}/_stand-in/reset`,
  ];
}
