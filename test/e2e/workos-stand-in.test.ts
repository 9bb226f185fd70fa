import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  ConflictException,
  DomainDataState,
  NotFoundException,
  OauthException,
  SignatureVerificationException,
  UnauthorizedException,
  UnprocessableEntityException,
  WorkOS,
  type EventName,
} from '@workos-inc/node';
import { signWorkOSWebhook, startWorkOSStandIn, type WorkOSStandIn } from '../../libs/testing/workos-stand-in.js';

/**
 * The stand-in driven only through the real SDK (plus plain fetch for what a browser or the
 * control API does), so every shape is the one the SDK's deserializers and exceptions expect.
 */

const API_KEY = 'sk_test_stand_in_e2e';
const CLIENT_ID = 'client_stand_in_e2e';
const SECRET = 'whsec_stand_in_e2e';
const CALLBACK = 'http://127.0.0.1:9/auth/sso/callback';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

let standIn: WorkOSStandIn;
let workos: WorkOS;
let receiver: Server;
let receiverUrl: string;
const received: Received[] = [];

beforeAll(async () => {
  standIn = await startWorkOSStandIn({ apiKey: API_KEY, clientId: CLIENT_ID, webhookSecret: SECRET });
  workos = new WorkOS(API_KEY, standIn.sdkOptions);
  // A tiny webhook receiver: keeps the raw body, as the app must for signature checks.
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhooks/workos`;
});

afterAll(async () => {
  await standIn?.stop();
  await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
});

async function rejection(p: Promise<unknown>): Promise<Error & Record<string, any>> {
  try {
    await p;
  } catch (err) {
    return err as Error & Record<string, any>;
  }
  throw new Error('expected a rejection');
}

describe('organizations', () => {
  it('creates and reads an organization in the shape the SDK deserializes', async () => {
    const org = await workos.organizations.createOrganization({
      name: 'Acme',
      domainData: [{ domain: 'acme.test', state: DomainDataState.Verified }],
      externalId: 'tenant-acme',
    });
    expect(org).toMatchObject({
      object: 'organization',
      name: 'Acme',
      externalId: 'tenant-acme',
      metadata: {},
      allowProfilesOutsideOrganization: false,
    });
    expect(org.id).toMatch(/^org_[0-9A-Z]{26}$/);
    expect(org.domains).toHaveLength(1);
    expect(org.domains[0]).toMatchObject({
      object: 'organization_domain',
      domain: 'acme.test',
      organizationId: org.id,
      state: 'verified',
      verificationStrategy: 'manual',
    });
    expect(typeof org.createdAt).toBe('string');

    expect(await workos.organizations.getOrganization(org.id)).toEqual(org);
    expect(await workos.organizations.getOrganizationByExternalId('tenant-acme')).toEqual(org);

    const once = await workos.organizations.createOrganization({ name: 'Retried', externalId: 'tenant-retried' }, { idempotencyKey: 'k-1' });
    const again = await workos.organizations.createOrganization({ name: 'Retried', externalId: 'tenant-retried' }, { idempotencyKey: 'k-1' });
    expect(again.id).toBe(once.id);
  });

  it('answers 404, 409, 422 and 401 in the bodies the SDK maps to its exceptions', async () => {
    const missing = await rejection(workos.organizations.getOrganizationByExternalId('nobody'));
    expect(missing).toBeInstanceOf(NotFoundException);
    expect(missing.status).toBe(404);
    expect(missing.code).toBe('entity_not_found');

    const duplicate = await rejection(workos.organizations.createOrganization({ name: 'Again', externalId: 'tenant-acme' }));
    expect(duplicate).toBeInstanceOf(ConflictException);

    const claimed = await rejection(
      workos.organizations.createOrganization({ name: 'Squatter', domainData: [{ domain: 'acme.test', state: DomainDataState.Verified }] }),
    );
    expect(claimed).toBeInstanceOf(ConflictException);

    const nameless = await rejection(workos.organizations.createOrganization({ name: '' }));
    expect(nameless).toBeInstanceOf(UnprocessableEntityException);

    const wrongKey = new WorkOS('sk_test_wrong', standIn.sdkOptions);
    expect(await rejection(wrongKey.organizations.getOrganizationByExternalId('tenant-acme'))).toBeInstanceOf(UnauthorizedException);
  });
});

describe('admin portal', () => {
  it('generates a link to the stand-in that describes what the portal would do', async () => {
    const org = await workos.organizations.createOrganization({ name: 'Portal Co' });
    const { link } = await workos.adminPortal.generateLink({ organization: org.id, intent: 'sso', returnUrl: 'http://127.0.0.1:9/settings' });
    expect(link.startsWith(`${standIn.url}/portal/`)).toBe(true);

    const page = await fetch(link);
    expect(page.status).toBe(200);
    expect(await page.json()).toMatchObject({ intent: 'sso', organization: { id: org.id }, return_url: 'http://127.0.0.1:9/settings' });

    expect(await rejection(workos.adminPortal.generateLink({ organization: 'org_missing', intent: 'sso' }))).toBeInstanceOf(NotFoundException);
  });
});

describe('SSO', () => {
  let orgId: string;
  let connectionId: string;

  beforeAll(async () => {
    const org = await workos.organizations.createOrganization({
      name: 'Globex',
      domainData: [{ domain: 'globex.test', state: DomainDataState.Verified }],
    });
    orgId = org.id;
    connectionId = (await standIn.createConnection(orgId, { connectionType: 'OktaSAML' })).connection.id;
  });

  it('redirects with a one-time code and exchanges it for the chosen profile', async () => {
    await standIn.queueProfiles(orgId, {
      email: 'hank@globex.test',
      first_name: 'Hank',
      last_name: 'Scorpio',
      role: { slug: 'admin' },
      groups: ['Leadership'],
    });
    const url = workos.sso.getAuthorizationUrl({ organization: orgId, clientId: CLIENT_ID, redirectUri: CALLBACK, state: 'st-123' });
    expect(url.startsWith(`${standIn.url}/sso/authorize?`)).toBe(true);

    const res = await fetch(url, { redirect: 'manual' });
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location')!);
    expect(`${location.origin}${location.pathname}`).toBe(CALLBACK);
    expect(location.searchParams.get('state')).toBe('st-123');
    const code = location.searchParams.get('code')!;
    expect(code).toBeTruthy();

    const { accessToken, profile } = await workos.sso.getProfileAndToken({ code, clientId: CLIENT_ID });
    expect(accessToken).toBeTruthy();
    expect(profile).toMatchObject({
      email: 'hank@globex.test',
      firstName: 'Hank',
      lastName: 'Scorpio',
      organizationId: orgId,
      connectionId,
      connectionType: 'OktaSAML',
      role: { slug: 'admin' },
      roles: [{ slug: 'admin' }],
      groups: ['Leadership'],
      customAttributes: {},
    });
    expect(profile.id).toMatch(/^prof_/);
    expect(profile.idpId).toBeTruthy();

    const reused = await rejection(workos.sso.getProfileAndToken({ code, clientId: CLIENT_ID }));
    expect(reused).toBeInstanceOf(OauthException);
    expect(reused.status).toBe(400);
    expect(reused.error).toBe('invalid_grant');
  });

  it('without a queued profile, signs in the login_hint with a stable identity', async () => {
    const signIn = async () => {
      const url = workos.sso.getAuthorizationUrl({ organization: orgId, clientId: CLIENT_ID, redirectUri: CALLBACK, loginHint: 'lisa@globex.test' });
      const { code } = await standIn.authorize(url);
      return (await workos.sso.getProfileAndToken({ code: code!, clientId: CLIENT_ID })).profile;
    };
    const first = await signIn();
    const second = await signIn();
    expect(first.email).toBe('lisa@globex.test');
    expect(second.idpId).toBe(first.idpId);
    expect(second.id).toBe(first.id);
  });

  it('expires codes and rejects a wrong client secret or client id', async () => {
    const url = () => workos.sso.getAuthorizationUrl({ organization: orgId, clientId: CLIENT_ID, redirectUri: CALLBACK });
    const stale = (await standIn.authorize(url())).code!;
    await standIn.advanceClock(11 * 60_000);
    const expired = await rejection(workos.sso.getProfileAndToken({ code: stale, clientId: CLIENT_ID }));
    expect(expired).toBeInstanceOf(OauthException);
    expect(expired.error).toBe('invalid_grant');

    const code = (await standIn.authorize(url())).code!;
    const wrongSecret = new WorkOS('sk_test_wrong', standIn.sdkOptions);
    expect(await rejection(wrongSecret.sso.getProfileAndToken({ code, clientId: CLIENT_ID }))).toBeInstanceOf(UnauthorizedException);
    const wrongClient = await rejection(workos.sso.getProfileAndToken({ code: (await standIn.authorize(url())).code!, clientId: 'client_other' }));
    expect(wrongClient).toBeInstanceOf(OauthException);
    expect(wrongClient.error).toBe('invalid_client');
  });

  it('answers an unknown client or an organization without a connection as WorkOS does', async () => {
    const badClient = await standIn.authorize(workos.sso.getAuthorizationUrl({ organization: orgId, clientId: 'client_other', redirectUri: CALLBACK }));
    expect(badClient.status).toBe(400);
    expect(badClient.body).toMatchObject({ error: 'invalid_client' });

    const bare = await workos.organizations.createOrganization({ name: 'No SSO Inc' });
    const noConnection = await standIn.authorize(
      workos.sso.getAuthorizationUrl({ organization: bare.id, clientId: CLIENT_ID, redirectUri: CALLBACK, state: 's' }),
    );
    expect(noConnection.status).toBe(302);
    expect(noConnection).toMatchObject({ code: null, state: 's', error: 'organization_invalid' });

    await standIn.deactivateConnection(connectionId);
    const inactive = await standIn.authorize(workos.sso.getAuthorizationUrl({ connection: connectionId, clientId: CLIENT_ID, redirectUri: CALLBACK }));
    expect(inactive.error).toBe('connection_unlinked');
    await standIn.activateConnection(connectionId);
  });
});

describe('directory events and webhooks', () => {
  let orgId: string;
  const DSYNC: EventName[] = ['dsync.user.created', 'dsync.user.updated', 'dsync.user.deleted', 'dsync.group.user_added', 'dsync.group.user_removed'];

  beforeAll(async () => {
    orgId = (await workos.organizations.createOrganization({ name: 'Initech', domainData: [{ domain: 'initech.test', state: DomainDataState.Verified }] })).id;
  });

  it('records directory changes as events the SDK lists with cursor paging', async () => {
    const { user } = await standIn.createDirectoryUser(orgId, { email: 'peter@initech.test', role: { slug: 'member' } });
    const { group } = await standIn.createDirectoryGroup(orgId, { name: 'TPS' });
    await standIn.addUserToGroup(group.id, user.id);
    await standIn.removeUserFromGroup(group.id, user.id);
    await standIn.suspendDirectoryUser(user.id);
    await standIn.deleteDirectoryUser(user.id);

    const seen: { id: string; event: string; data: any }[] = [];
    let after: string | undefined;
    for (let page = 0; page < 10; page++) {
      const list = await workos.events.listEvents({ events: DSYNC, organizationId: orgId, limit: 2, after });
      seen.push(...list.data);
      if (list.data.length < 2) break;
      after = list.listMetadata.after ?? undefined;
    }
    expect(seen.map((e) => e.event)).toEqual([
      'dsync.user.created',
      'dsync.group.user_added',
      'dsync.group.user_removed',
      'dsync.user.updated',
      'dsync.user.deleted',
    ]);
    expect(new Set(seen.map((e) => e.id)).size).toBe(5);
    const updated = seen[3].data;
    expect(updated).toMatchObject({ object: 'directory_user', id: user.id, organizationId: orgId, state: 'inactive', previousAttributes: { state: 'active' } });
    expect(seen[1].data).toMatchObject({ directoryId: user.directory_id, user: { id: user.id }, group: { id: group.id, name: 'TPS' } });
    expect(seen[4].data).toMatchObject({ id: user.id, email: 'peter@initech.test' });

    const other = await workos.events.listEvents({ events: DSYNC, organizationId: 'org_someone_else' });
    expect(other.data).toEqual([]);
  });

  it('delivers signed webhooks that constructEvent accepts, and forged ones it rejects', async () => {
    await standIn.setWebhook(receiverUrl);
    const before = received.length;
    const { user, event } = await standIn.createDirectoryUser(orgId, { email: 'michael@initech.test' });
    await standIn.settle();
    expect(received.length).toBe(before + 1);

    const construct = (r: Received, secret = SECRET) =>
      workos.webhooks.constructEvent({ payload: r.body, sigHeader: String(r.headers['workos-signature']), secret });
    const auto = await construct(received[before]);
    expect(auto).toMatchObject({ id: event!.id, event: 'dsync.user.created', data: { id: user.id, email: 'michael@initech.test' } });
    expect(Object.keys(JSON.parse(received[before].body)).sort()).toEqual(['created_at', 'data', 'event', 'id']);
    await standIn.clearWebhook();

    // The same event three times: one id, three valid signatures (the app must dedupe).
    const start = received.length;
    const three = await standIn.deliver(event!.id, { url: receiverUrl, times: 3 });
    expect(three.map((d) => d.status)).toEqual([200, 200, 200]);
    const replays = await Promise.all(received.slice(start).map((r) => construct(r)));
    expect(replays.map((e) => e.id)).toEqual([event!.id, event!.id, event!.id]);

    const [wrongSecret] = await standIn.deliver(event!.id, { url: receiverUrl, secret: 'whsec_wrong' });
    expect(wrongSecret.ok).toBe(true);
    expect(await rejection(construct(received.at(-1)!))).toBeInstanceOf(SignatureVerificationException);

    await standIn.deliver(event!.id, { url: receiverUrl, timestampMs: Date.now() - 10 * 60_000 });
    const stale = await rejection(construct(received.at(-1)!));
    expect(stale).toBeInstanceOf(SignatureVerificationException);
    expect(stale.message).toMatch(/tolerance/);

    await standIn.deliver(event!.id, { url: receiverUrl, alterBody: true });
    expect(await rejection(construct(received.at(-1)!))).toBeInstanceOf(SignatureVerificationException);

    // signWorkOSWebhook signs exactly like the deliveries.
    const body = received[before].body;
    const header = signWorkOSWebhook(body, SECRET);
    expect((await workos.webhooks.constructEvent({ payload: body, sigHeader: header, secret: SECRET })).id).toBe(event!.id);
  });

  it('lets a suspended directory user no longer sign in through the IdP', async () => {
    await standIn.createConnection(orgId);
    const { user } = await standIn.createDirectoryUser(orgId, { email: 'milton@initech.test', role: { slug: 'admin' } });
    const url = () => workos.sso.getAuthorizationUrl({ organization: orgId, clientId: CLIENT_ID, redirectUri: CALLBACK, loginHint: 'milton@initech.test' });
    const { profile } = await workos.sso.getProfileAndToken({ code: (await standIn.authorize(url())).code!, clientId: CLIENT_ID });
    expect(profile).toMatchObject({ idpId: user.idp_id, role: { slug: 'admin' } });

    await standIn.suspendDirectoryUser(user.id);
    expect((await standIn.authorize(url())).error).toBe('access_denied');
  });
});
