import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import type { HttpClient, TestResponse } from '../../libs/testing/index.js';
import { createTenant, seedProjects, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/**
 * Bad input on every endpoint gets a 4xx in the one error shape, naming the offending field, and
 * writes nothing; then fast-check throws arbitrary bodies, ids and query strings at them.
 */

interface Fixture {
  tenant: TenantFixture;
  admin: HttpClient;
  anon: HttpClient;
  projectId: string;
  taskId: string;
  memberId: string;
}

type Who = 'anon' | 'admin' | 'owner';
type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

interface Case {
  name: string;
  who: Who;
  method: Method;
  path: (f: Fixture) => string;
  /** Sent as JSON; a string is sent verbatim (malformed bodies). */
  body?: unknown;
  headers?: Record<string, string>;
  status: number;
  code: string;
  /** The field the error must name; null: it must name none. */
  field: string | null;
  /** A GET (same caller) whose answer must be identical before and after. */
  unchanged?: (f: Fixture) => string;
}

const ERROR_KEYS = ['status', 'code', 'message', 'field', 'requestId'];
const UNKNOWN_UUID = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';

let t: TestApp;
let f: Fixture;

beforeAll(async () => {
  t = await startTestApp();
  const tenant = await createTenant(t, { tier: 'shared' });
  const [project] = await seedProjects(tenant, 1, 1);
  const member = await tenant.owner.post(`/orgs/${tenant.slug}/members`, { email: `member@${tenant.slug}.test`, role: 'member' });
  if (member.status !== 201) throw new Error(`member not added: ${member.status} ${JSON.stringify(member.body)}`);
  f = { tenant, admin: await t.admin(), anon: t.http, projectId: project.id, taskId: project.taskIds[0], memberId: member.body.userId };
});
afterAll(async () => {
  await t?.close();
});

function client(who: Who): HttpClient {
  return who === 'anon' ? f.anon : who === 'admin' ? f.admin : f.tenant.owner;
}

/** What breaks the error contract in a response, or null. */
function contractViolation(res: TestResponse): string | null {
  if (res.status >= 500) return `status ${res.status}`;
  if (res.status < 400) return null;
  const b = res.body as Record<string, unknown> | undefined;
  if (!b || typeof b !== 'object' || Array.isArray(b)) return 'the error body is not a JSON object';
  const extra = Object.keys(b).filter((k) => !ERROR_KEYS.includes(k));
  if (extra.length > 0) return `unexpected keys ${extra.join(', ')}`;
  if (b.status !== res.status) return `body.status ${String(b.status)} differs from the HTTP status ${res.status}`;
  if (typeof b.code !== 'string' || !/^[A-Z_]+$/.test(b.code)) return 'code is not an UPPER_SNAKE string';
  if (typeof b.message !== 'string' || b.message === '') return 'message is missing';
  if (/\n\s+at /.test(b.message)) return 'message carries a stack trace';
  if (b.field !== undefined && (typeof b.field !== 'string' || b.field === '')) return 'field is not a non-empty string';
  if (typeof b.requestId !== 'string' || b.requestId === '') return 'requestId is missing';
  if (res.headers.get('x-request-id') !== b.requestId) return 'requestId differs from the X-Request-Id header';
  return null;
}

function describeExchange(method: string, path: string, body: unknown, res: TestResponse): string {
  const sent = body === undefined ? '' : ` ${JSON.stringify(body)?.slice(0, 300)}`;
  return `${method} ${path}${sent} -> ${res.status} ${JSON.stringify(res.body)?.slice(0, 500)}`;
}

async function send(who: Who, method: Method, path: string, body?: unknown, headers?: Record<string, string>): Promise<TestResponse> {
  const c = headers ? client(who).withHeaders(headers) : client(who);
  return c.request(method, path, body);
}

// ---- the table --------------------------------------------------------------------------

const projects = (x: Fixture) => `/orgs/${x.tenant.slug}/projects`;
const project = (x: Fixture) => `${projects(x)}/${x.projectId}`;
const tasks = (x: Fixture) => `${project(x)}/tasks`;
const task = (x: Fixture) => `${tasks(x)}/${x.taskId}`;
const members = (x: Fixture) => `/orgs/${x.tenant.slug}/members`;
const member = (x: Fixture) => `${members(x)}/${x.memberId}`;

const s = (n: number) => 'x'.repeat(n);
// 200 characters for class-validator's Length (it skips variation selectors), 201 for PostgreSQL's length().
const s200WithSelector = `${s(200)}\ufe0f`;
const deeplyNested = `{"name":${'['.repeat(3000)}${']'.repeat(3000)}}`;

type CaseInput = Omit<Case, 'who' | 'method' | 'path' | 'unchanged' | 'status' | 'code'> & { status?: number; code?: string };

/** Cases for one endpoint; status defaults to 400 VALIDATION_FAILED. */
function endpoint(
  label: string,
  who: Who,
  method: Method,
  path: (x: Fixture) => string,
  unchanged: ((x: Fixture) => string) | undefined,
  inputs: CaseInput[],
): Case[] {
  return inputs.map((i) => ({ status: 400, code: 'VALIDATION_FAILED', ...i, name: `${method} ${label}: ${i.name}`, who, method, path, unchanged }));
}

/** What every JSON-body endpoint must refuse whatever its fields. */
function bodyShape(validBody: Record<string, unknown>): CaseInput[] {
  return [
    { name: 'malformed JSON', body: '{"a": ', code: 'MALFORMED_BODY', field: null },
    { name: 'an empty body declared as JSON', body: '', code: 'MALFORMED_BODY', field: null },
    { name: 'a JSON array of the right object', body: JSON.stringify([validBody]), field: 'body' },
    { name: 'a JSON string', body: '"text"', field: 'body' },
    { name: 'JSON null', body: 'null', field: 'body' },
    { name: 'a JSON number', body: '42', field: 'body' },
    { name: 'a text/plain body', body: 'name=x', headers: { 'content-type': 'text/plain' }, field: 'body' },
    { name: 'a value nested 3,000 levels deep', body: deeplyNested, field: 'name' },
  ];
}

const validTenant = { slug: 'never-created', name: 'Never', tier: 'shared', ownerEmail: 'owner@never.test' };
const without = (o: Record<string, unknown>, k: string) => Object.fromEntries(Object.entries(o).filter(([key]) => key !== k));

const CASES: Case[] = [
  ...endpoint('/auth/dev/login', 'anon', 'POST', () => '/auth/dev/login', undefined, [
    { name: 'missing email', body: {}, field: 'email' },
    { name: 'email of the wrong type', body: { email: 42 }, field: 'email' },
    { name: 'email that is not one', body: { email: 'not-an-email' }, field: 'email' },
    { name: 'email longer than 320', body: { email: `${s(320)}@x.test` }, field: 'email' },
    { name: 'unknown property', body: { email: 'a@b.test', platformAdmin: true }, field: 'platformAdmin' },
    ...bodyShape({ email: 'a@b.test' }),
  ]),

  ...endpoint('/tenants', 'admin', 'POST', () => '/tenants', () => '/tenants?limit=500', [
    ...['slug', 'name', 'tier', 'ownerEmail'].map((k) => ({ name: `missing ${k}`, body: without(validTenant, k), field: k })),
    { name: 'slug of the wrong type', body: { ...validTenant, slug: 42 }, field: 'slug' },
    { name: 'slug with capitals and spaces', body: { ...validTenant, slug: 'Not A Slug' }, field: 'slug' },
    { name: 'slug too short', body: { ...validTenant, slug: 'ab' }, field: 'slug' },
    { name: 'slug too long', body: { ...validTenant, slug: s(64) }, field: 'slug' },
    { name: 'empty name', body: { ...validTenant, name: '' }, field: 'name' },
    { name: 'name longer than 200', body: { ...validTenant, name: s(201) }, field: 'name' },
    { name: 'name of 201 code points, one a variation selector', body: { ...validTenant, name: s200WithSelector }, field: 'name' },
    { name: 'name with a NUL character', body: { ...validTenant, name: 'a\u0000b' }, field: 'name' },
    { name: 'name of the wrong type', body: { ...validTenant, name: ['Acme'] }, field: 'name' },
    { name: 'unknown tier', body: { ...validTenant, tier: 'gold' }, field: 'tier' },
    { name: 'tier of the wrong type', body: { ...validTenant, tier: 1 }, field: 'tier' },
    { name: 'ownerEmail that is not one', body: { ...validTenant, ownerEmail: 'nobody' }, field: 'ownerEmail' },
    { name: 'server that is not a key', body: { ...validTenant, server: 'Not a key!' }, field: 'server' },
    { name: 'server that is not registered', body: { ...validTenant, server: 'nowhere' }, code: 'SERVER_NOT_FOUND', field: 'server' },
    { name: 'unknown property', body: { ...validTenant, colour: 'blue' }, field: 'colour' },
    ...bodyShape(validTenant),
  ]),
  ...endpoint('/tenants', 'admin', 'GET', () => '/tenants?limit=0', undefined, [{ name: 'limit 0', field: 'limit' }]),
  ...endpoint('/tenants', 'admin', 'GET', () => '/tenants?limit=501', undefined, [{ name: 'limit 501', field: 'limit' }]),
  ...endpoint('/tenants', 'admin', 'GET', () => '/tenants?limit=abc', undefined, [{ name: 'limit abc', field: 'limit' }]),
  ...endpoint('/tenants', 'admin', 'GET', () => '/tenants?limit=1.5', undefined, [{ name: 'limit 1.5', field: 'limit' }]),
  ...endpoint('/tenants', 'admin', 'GET', () => '/tenants?cursor=nope', undefined, [{ name: 'cursor not a cursor', field: 'cursor' }]),
  ...endpoint('/tenants', 'admin', 'GET', () => '/tenants?sort=name', undefined, [{ name: 'unknown query parameter', field: 'sort' }]),
  ...endpoint('/tenants/:id', 'admin', 'GET', () => '/tenants/not-a-uuid', undefined, [{ name: 'non-UUID id', field: 'id' }]),
  ...endpoint('/tenants/:id', 'admin', 'GET', () => '/tenants/123', undefined, [{ name: 'numeric id', field: 'id' }]),
  ...endpoint('/tenants/:id', 'admin', 'GET', () => `/tenants/${UNKNOWN_UUID}`, undefined, [
    { name: 'unknown id', status: 404, code: 'TENANT_NOT_FOUND', field: 'id' },
  ]),

  ...endpoint('/orgs/:slug', 'owner', 'GET', () => '/orgs/Not_A_Slug/projects', undefined, [{ name: 'malformed slug', field: 'slug' }]),
  ...endpoint('/orgs/:slug', 'owner', 'POST', () => '/orgs/-x-/projects', undefined, [{ name: 'slug ending in a dash', body: { name: 'p' }, field: 'slug' }]),
  ...endpoint('/orgs/:slug', 'owner', 'GET', () => '/orgs/no-such-tenant-here/projects', undefined, [
    { name: 'unknown slug', status: 404, code: 'TENANT_NOT_FOUND', field: 'slug' },
  ]),

  ...endpoint('projects', 'owner', 'POST', projects, (x) => `${projects(x)}?limit=100`, [
    { name: 'missing name', body: {}, field: 'name' },
    { name: 'name of the wrong type', body: { name: 42 }, field: 'name' },
    { name: 'empty name', body: { name: '' }, field: 'name' },
    { name: 'name longer than 200', body: { name: s(201) }, field: 'name' },
    { name: 'name of 201 code points, one a variation selector', body: { name: s200WithSelector }, field: 'name' },
    { name: 'name with a NUL character', body: { name: 'a\u0000b' }, field: 'name' },
    { name: 'description longer than 5000', body: { name: 'p', description: s(5001) }, field: 'description' },
    { name: 'description of the wrong type', body: { name: 'p', description: { text: 'x' } }, field: 'description' },
    { name: 'description with a NUL character', body: { name: 'p', description: '\u0000' }, field: 'description' },
    { name: 'unknown property', body: { name: 'p', owner: 'x' }, field: 'owner' },
    { name: 'an organization_id of its own choosing', body: { name: 'p', organizationId: UNKNOWN_UUID }, field: 'organizationId' },
    ...bodyShape({ name: 'p' }),
    { name: 'a body over 1 MB', body: JSON.stringify({ name: 'p', description: s(1_100_000) }), status: 413, code: 'PAYLOAD_TOO_LARGE', field: null },
  ]),
  ...endpoint('projects', 'owner', 'GET', (x) => `${projects(x)}?limit=0`, undefined, [{ name: 'limit 0', field: 'limit' }]),
  ...endpoint('projects', 'owner', 'GET', (x) => `${projects(x)}?limit=101`, undefined, [{ name: 'limit 101', field: 'limit' }]),
  ...endpoint('projects', 'owner', 'GET', (x) => `${projects(x)}?limit=abc`, undefined, [{ name: 'limit abc', field: 'limit' }]),
  ...endpoint('projects', 'owner', 'GET', (x) => `${projects(x)}?limit=`, undefined, [{ name: 'empty limit', field: 'limit' }]),
  ...endpoint('projects', 'owner', 'GET', (x) => `${projects(x)}?cursor=nope`, undefined, [{ name: 'cursor not a cursor', field: 'cursor' }]),
  ...endpoint('projects', 'owner', 'GET', (x) => `${projects(x)}?organizationId=${UNKNOWN_UUID}`, undefined, [
    { name: 'unknown query parameter', field: 'organizationId' },
  ]),
  ...endpoint('projects/:projectId', 'owner', 'GET', (x) => `${projects(x)}/nope`, undefined, [{ name: 'non-UUID id', field: 'projectId' }]),
  ...endpoint('projects/:projectId', 'owner', 'GET', (x) => `${projects(x)}/${UNKNOWN_UUID}`, undefined, [
    { name: 'unknown id', status: 404, code: 'PROJECT_NOT_FOUND', field: 'projectId' },
  ]),
  ...endpoint('projects/:projectId', 'owner', 'PATCH', project, project, [
    { name: 'empty body', body: {}, field: 'body' },
    { name: 'name null', body: { name: null }, field: 'name' },
    { name: 'empty name', body: { name: '' }, field: 'name' },
    { name: 'name longer than 200', body: { name: s(201) }, field: 'name' },
    { name: 'name with a NUL character', body: { name: '\u0000' }, field: 'name' },
    { name: 'description longer than 5000', body: { description: s(5001) }, field: 'description' },
    { name: 'description of the wrong type', body: { description: 7 }, field: 'description' },
    { name: 'its id', body: { name: 'p', id: UNKNOWN_UUID }, field: 'id' },
    { name: 'its createdAt', body: { name: 'p', createdAt: '2020-01-01T00:00:00Z' }, field: 'createdAt' },
    ...bodyShape({ name: 'p' }),
  ]),
  ...endpoint('projects/:projectId', 'owner', 'PATCH', (x) => `${projects(x)}/nope`, undefined, [
    { name: 'non-UUID id', body: { name: 'p' }, field: 'projectId' },
  ]),
  ...endpoint('projects/:projectId', 'owner', 'PATCH', (x) => `${projects(x)}/${UNKNOWN_UUID}`, undefined, [
    { name: 'unknown id', body: { name: 'p' }, status: 404, code: 'PROJECT_NOT_FOUND', field: 'projectId' },
  ]),
  ...endpoint('projects/:projectId', 'owner', 'DELETE', (x) => `${projects(x)}/nope`, (x) => `${projects(x)}?limit=100`, [
    { name: 'non-UUID id', field: 'projectId' },
  ]),
  ...endpoint('projects/:projectId', 'owner', 'DELETE', (x) => `${projects(x)}/${UNKNOWN_UUID}`, (x) => `${projects(x)}?limit=100`, [
    { name: 'unknown id', status: 404, code: 'PROJECT_NOT_FOUND', field: 'projectId' },
  ]),

  ...endpoint('tasks', 'owner', 'POST', tasks, (x) => `${tasks(x)}?limit=100`, [
    { name: 'missing title', body: {}, field: 'title' },
    { name: 'title of the wrong type', body: { title: true }, field: 'title' },
    { name: 'empty title', body: { title: '' }, field: 'title' },
    { name: 'title longer than 500', body: { title: s(501) }, field: 'title' },
    { name: 'title with a NUL character', body: { title: 'a\u0000' }, field: 'title' },
    { name: 'unknown status', body: { title: 't', status: 'blocked' }, field: 'status' },
    { name: 'status null', body: { title: 't', status: null }, field: 'status' },
    { name: 'status of the wrong type', body: { title: 't', status: 1 }, field: 'status' },
    { name: 'a projectId in the body', body: { title: 't', projectId: UNKNOWN_UUID }, field: 'projectId' },
    ...bodyShape({ title: 't' }),
  ]),
  ...endpoint('tasks', 'owner', 'POST', (x) => `${projects(x)}/nope/tasks`, undefined, [
    { name: 'non-UUID projectId', body: { title: 't' }, field: 'projectId' },
  ]),
  ...endpoint('tasks', 'owner', 'POST', (x) => `${projects(x)}/${UNKNOWN_UUID}/tasks`, undefined, [
    { name: 'unknown project', body: { title: 't' }, status: 404, code: 'PROJECT_NOT_FOUND', field: 'projectId' },
  ]),
  ...endpoint('tasks', 'owner', 'GET', (x) => `${tasks(x)}?status=blocked`, undefined, [{ name: 'unknown status', field: 'status' }]),
  ...endpoint('tasks', 'owner', 'GET', (x) => `${tasks(x)}?status=DONE`, undefined, [{ name: 'status in capitals', field: 'status' }]),
  ...endpoint('tasks', 'owner', 'GET', (x) => `${tasks(x)}?status=todo&status=done`, undefined, [{ name: 'status twice', field: 'status' }]),
  ...endpoint('tasks', 'owner', 'GET', (x) => `${tasks(x)}?limit=0`, undefined, [{ name: 'limit 0', field: 'limit' }]),
  ...endpoint('tasks', 'owner', 'GET', (x) => `${tasks(x)}?limit=101`, undefined, [{ name: 'limit 101', field: 'limit' }]),
  ...endpoint('tasks', 'owner', 'GET', (x) => `${tasks(x)}?limit=abc`, undefined, [{ name: 'limit abc', field: 'limit' }]),
  ...endpoint('tasks', 'owner', 'GET', (x) => `${tasks(x)}?cursor=nope`, undefined, [{ name: 'cursor not a cursor', field: 'cursor' }]),
  ...endpoint('tasks', 'owner', 'GET', (x) => `${tasks(x)}?assignee=me`, undefined, [{ name: 'unknown query parameter', field: 'assignee' }]),
  ...endpoint('tasks', 'owner', 'GET', (x) => `${projects(x)}/nope/tasks`, undefined, [{ name: 'non-UUID projectId', field: 'projectId' }]),
  ...endpoint('tasks/:taskId', 'owner', 'GET', (x) => `${tasks(x)}/nope`, undefined, [{ name: 'non-UUID id', field: 'taskId' }]),
  ...endpoint('tasks/:taskId', 'owner', 'GET', (x) => `${tasks(x)}/${UNKNOWN_UUID}`, undefined, [
    { name: 'unknown id', status: 404, code: 'TASK_NOT_FOUND', field: 'taskId' },
  ]),
  ...endpoint('tasks/:taskId', 'owner', 'PATCH', task, task, [
    { name: 'empty body', body: {}, field: 'body' },
    { name: 'title null', body: { title: null }, field: 'title' },
    { name: 'status null', body: { status: null }, field: 'status' },
    { name: 'unknown status', body: { status: 'blocked' }, field: 'status' },
    { name: 'empty title', body: { title: '' }, field: 'title' },
    { name: 'title longer than 500', body: { title: s(501) }, field: 'title' },
    { name: 'a projectId in the body', body: { title: 't', projectId: UNKNOWN_UUID }, field: 'projectId' },
    ...bodyShape({ title: 't' }),
  ]),
  ...endpoint('tasks/:taskId', 'owner', 'PATCH', (x) => `${tasks(x)}/nope`, undefined, [{ name: 'non-UUID id', body: { title: 't' }, field: 'taskId' }]),
  ...endpoint('tasks/:taskId', 'owner', 'DELETE', (x) => `${tasks(x)}/nope`, (x) => `${tasks(x)}?limit=100`, [{ name: 'non-UUID id', field: 'taskId' }]),
  ...endpoint('tasks/:taskId', 'owner', 'DELETE', (x) => `${tasks(x)}/${UNKNOWN_UUID}`, (x) => `${tasks(x)}?limit=100`, [
    { name: 'unknown id', status: 404, code: 'TASK_NOT_FOUND', field: 'taskId' },
  ]),

  ...endpoint('members', 'owner', 'POST', members, (x) => `${members(x)}?limit=100`, [
    { name: 'missing email', body: { role: 'member' }, field: 'email' },
    { name: 'missing role', body: { email: 'new@x.test' }, field: 'role' },
    { name: 'email that is not one', body: { email: 'nope', role: 'member' }, field: 'email' },
    { name: 'email of the wrong type', body: { email: 42, role: 'member' }, field: 'email' },
    { name: 'unknown role', body: { email: 'new@x.test', role: 'superuser' }, field: 'role' },
    { name: 'role in capitals', body: { email: 'new@x.test', role: 'OWNER' }, field: 'role' },
    { name: 'unknown property', body: { email: 'new@x.test', role: 'member', tenantId: UNKNOWN_UUID }, field: 'tenantId' },
    ...bodyShape({ email: 'new@x.test', role: 'member' }),
  ]),
  ...endpoint('members', 'owner', 'GET', (x) => `${members(x)}?limit=0`, undefined, [{ name: 'limit 0', field: 'limit' }]),
  ...endpoint('members', 'owner', 'GET', (x) => `${members(x)}?limit=101`, undefined, [{ name: 'limit 101', field: 'limit' }]),
  ...endpoint('members', 'owner', 'GET', (x) => `${members(x)}?cursor=nope`, undefined, [{ name: 'cursor not a cursor', field: 'cursor' }]),
  ...endpoint('members/:userId', 'owner', 'PATCH', member, (x) => `${members(x)}?limit=100`, [
    { name: 'empty body', body: {}, field: 'role' },
    { name: 'unknown role', body: { role: 'god' }, field: 'role' },
    { name: 'role null', body: { role: null }, field: 'role' },
    { name: 'an email besides the role', body: { role: 'viewer', email: 'x@y.test' }, field: 'email' },
    ...bodyShape({ role: 'viewer' }),
  ]),
  ...endpoint('members/:userId', 'owner', 'PATCH', (x) => `${members(x)}/nope`, undefined, [
    { name: 'non-UUID id', body: { role: 'viewer' }, field: 'userId' },
  ]),
  ...endpoint('members/:userId', 'owner', 'PATCH', (x) => `${members(x)}/${UNKNOWN_UUID}`, undefined, [
    { name: 'unknown user', body: { role: 'viewer' }, status: 404, code: 'MEMBER_NOT_FOUND', field: 'userId' },
  ]),
  ...endpoint('members/:userId', 'owner', 'DELETE', (x) => `${members(x)}/nope`, (x) => `${members(x)}?limit=100`, [
    { name: 'non-UUID id', field: 'userId' },
  ]),
  ...endpoint('members/:userId', 'owner', 'DELETE', (x) => `${members(x)}/${UNKNOWN_UUID}`, (x) => `${members(x)}?limit=100`, [
    { name: 'unknown user', status: 404, code: 'MEMBER_NOT_FOUND', field: 'userId' },
  ]),

  ...endpoint('/me', 'anon', 'GET', () => '/me', undefined, [{ name: 'no token', status: 401, code: 'UNAUTHENTICATED', field: null }]),
  ...endpoint('/me', 'anon', 'GET', () => '/me', undefined, [
    { name: 'a token that is not a JWT', headers: { authorization: 'Bearer garbage' }, status: 401, code: 'UNAUTHENTICATED', field: null },
  ]),
  ...endpoint('/me', 'anon', 'GET', () => '/me', undefined, [
    { name: 'basic credentials', headers: { authorization: 'Basic YTpi' }, status: 401, code: 'UNAUTHENTICATED', field: null },
  ]),
  ...endpoint('unknown route', 'owner', 'GET', () => '/no/such/route', undefined, [{ name: 'no such route', status: 404, code: 'ROUTE_NOT_FOUND', field: null }]),
];

describe('bad input, endpoint by endpoint', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const before = c.unchanged ? await client(c.who).get(c.unchanged(f)) : undefined;
    const path = c.path(f);
    const res = await send(c.who, c.method, path, c.body, c.headers);
    const exchange = describeExchange(c.method, path, c.body, res);

    expect({ exchange, violation: contractViolation(res) }).toEqual({ exchange, violation: null });
    expect({ exchange, status: res.status, code: res.body?.code }).toEqual({ exchange, status: c.status, code: c.code });
    expect({ exchange, field: res.body.field ?? null }).toEqual({ exchange, field: c.field });
    if (c.unchanged && before) {
      const after = await client(c.who).get(c.unchanged(f));
      expect(after.status).toBe(200);
      expect(after.body).toEqual(before.body);
    }
  });

  it('leaves the fixtures as they were (nothing above was half-applied)', async () => {
    const p = await f.tenant.owner.get(project(f));
    expect(p.body).toMatchObject({ name: `${f.tenant.slug} project 0`, description: null });
    const tk = await f.tenant.owner.get(task(f));
    expect(tk.body).toMatchObject({ title: `${f.tenant.slug} project 0 task 0`, status: 'todo' });
    const list = await f.tenant.owner.get(`${members(f)}?limit=100`);
    expect(list.body.items.map((m: { role: string }) => m.role).sort()).toEqual(['member', 'owner']);
    const tenants = await f.admin.get('/tenants?limit=500');
    expect(tenants.body.items.map((x: { slug: string }) => x.slug)).toEqual([f.tenant.slug]);
  });

  // Fastify's router answers these itself, before Nest's filter (see frameworkErrors in src/app.ts).
  it('a path with a malformed percent-escape still gets the error shape', async () => {
    const res = await f.tenant.owner.get(`${projects(f)}/%zz`);
    expect(res.status).toBe(400);
    expect(contractViolation(res)).toBeNull();
  });
  it('a path parameter over 100 characters still gets the error shape', async () => {
    const res = await f.tenant.owner.get(`${projects(f)}/${s(101)}`);
    expect(res.status).toBe(400);
    expect(res.body.field).toBe('projectId');
  });
  it('a path parameter over 500 characters gets 414 in the error shape', async () => {
    const res = await f.tenant.owner.get(`${projects(f)}/${s(501)}`);
    expect(res.status).toBe(414);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(contractViolation(res)).toBeNull();
  });
});

// ---- properties -------------------------------------------------------------------------

const RUNS = { numRuns: 60 };

async function holdsContract(who: Who, method: Method, path: string, body?: unknown): Promise<void> {
  const res = await send(who, method, path, body);
  const violation = contractViolation(res);
  if (violation) throw new Error(`${violation}: ${describeExchange(method, path, body, res)}`);
}

const anyJson = fc.jsonValue({ maxDepth: 3, stringUnit: 'binary' });
// Values that have broken something before: null for a NOT NULL column, NUL, lengths just past a limit.
const edgeValue = fc.constantFrom<unknown>(null, 'a\u0000b', '', s(201), s(501), s(5001), 0, -1, true, [], {}, [null], { a: null });
const plausibleValue = fc.constantFrom<unknown>('x@y.test', 'owner', 'viewer', 'shared', 'dedicated', 'done', 'p', 'acme-inc');

/** Any JSON at all, any object, and (mostly) objects with the endpoint's own keys holding anything. */
function bodies(keys: string[]): fc.Arbitrary<unknown> {
  const value = fc.oneof(
    { weight: 3, arbitrary: edgeValue },
    { weight: 2, arbitrary: plausibleValue },
    { weight: 1, arbitrary: anyJson },
    { weight: 1, arbitrary: fc.string({ unit: 'binary' }) },
  );
  const shape = Object.fromEntries(keys.map((k) => [k, value]));
  return fc.oneof(
    { weight: 3, arbitrary: fc.record(shape) },
    { weight: 2, arbitrary: fc.record(shape, { requiredKeys: [] }) },
    { weight: 1, arbitrary: anyJson },
    { weight: 1, arbitrary: fc.dictionary(fc.string({ unit: 'binary', maxLength: 12 }), anyJson, { maxKeys: 4 }) },
  );
}

const BODY_ENDPOINTS: Array<{ name: string; who: Who; method: Method; path: (x: Fixture) => string; keys: string[] }> = [
  { name: 'POST /auth/dev/login', who: 'anon', method: 'POST', path: () => '/auth/dev/login', keys: ['email'] },
  { name: 'POST /tenants', who: 'admin', method: 'POST', path: () => '/tenants', keys: ['slug', 'name', 'tier', 'ownerEmail', 'server'] },
  { name: 'POST projects', who: 'owner', method: 'POST', path: projects, keys: ['name', 'description'] },
  { name: 'PATCH projects/:projectId', who: 'owner', method: 'PATCH', path: project, keys: ['name', 'description'] },
  { name: 'POST tasks', who: 'owner', method: 'POST', path: tasks, keys: ['title', 'status'] },
  { name: 'PATCH tasks/:taskId', who: 'owner', method: 'PATCH', path: task, keys: ['title', 'status'] },
  { name: 'POST members', who: 'owner', method: 'POST', path: members, keys: ['email', 'role'] },
  { name: 'PATCH members/:userId', who: 'owner', method: 'PATCH', path: member, keys: ['role'] },
];

// Strings for path segments: any text, control characters, UUID look-alikes, some very long.
const segment = fc
  .oneof(
    fc.string({ unit: 'grapheme', maxLength: 30 }),
    fc.string({ unit: 'binary-ascii', maxLength: 40 }),
    fc.string({ unit: 'binary', minLength: 90, maxLength: 300 }),
    fc.uuid(),
    fc.uuid().map((u) => u.toUpperCase()),
    fc.uuid().map((u) => `${u}x`),
    fc.constantFrom('', ' ', '.', '..', '%', '%00', 'null', 'undefined', '__proto__', 'constructor', '0', '-1'),
  )
  .map((raw) => encodeURIComponent(raw));

const ID_ROUTES: Array<(x: Fixture, id: string) => [Who, Method, string, unknown?]> = [
  (_x, id) => ['admin', 'GET', `/tenants/${id}`],
  (x, id) => ['owner', 'GET', `${projects(x)}/${id}`],
  (x, id) => ['owner', 'PATCH', `${projects(x)}/${id}`, { description: 'fuzzed' }],
  (x, id) => ['owner', 'DELETE', `${projects(x)}/${id}`],
  (x, id) => ['owner', 'GET', `${projects(x)}/${id}/tasks`],
  (x, id) => ['owner', 'POST', `${projects(x)}/${id}/tasks`, { title: 'fuzzed' }],
  (x, id) => ['owner', 'GET', `${tasks(x)}/${id}`],
  (x, id) => ['owner', 'PATCH', `${tasks(x)}/${id}`, { status: 'doing' }],
  (x, id) => ['owner', 'DELETE', `${tasks(x)}/${id}`],
  (x, id) => ['owner', 'PATCH', `${members(x)}/${id}`, { role: 'viewer' }],
  (x, id) => ['owner', 'DELETE', `${members(x)}/${id}`],
  (_x, slug) => ['owner', 'GET', `/orgs/${slug}/projects`],
  (_x, slug) => ['owner', 'POST', `/orgs/${slug}/projects`, { name: 'fuzzed' }],
  (_x, slug) => ['owner', 'GET', `/orgs/${slug}/members`],
];

const LIST_ROUTES: Array<[Who, (x: Fixture) => string]> = [
  ['admin', () => '/tenants'],
  ['owner', projects],
  ['owner', tasks],
  ['owner', members],
];

const queryText = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.integer().map(String),
  fc.double().map(String),
  fc.uuid(),
  fc.constantFrom('', '0', '100', '101', '-1', '1e2', '0x10', 'todo', 'DONE', 'null', '[]', '__proto__', 'constructor'),
);
const queryPair = fc.tuple(fc.oneof(fc.constantFrom('limit', 'cursor', 'status', '__proto__', 'constructor', 'limit[]'), queryText), queryText);
// Raw query strings, unencoded, from the characters a query parser has opinions about.
const rawQuery = fc.string({ unit: fc.constantFrom('%', '&', '=', '[', ']', '+', '.', ';', 'a', '1', 'limit', 'cursor', '%2', '%00'), maxLength: 12 });

describe('arbitrary input never gets a 500, and every error has the shape', () => {
  it.each(BODY_ENDPOINTS.map((e) => [e.name, e] as const))('bodies sent to %s', async (_name, e) => {
    await fc.assert(
      fc.asyncProperty(bodies(e.keys), async (body) => {
        await holdsContract(e.who, e.method, e.path(f), JSON.stringify(body));
      }),
      RUNS,
    );
  });

  it('any string as a path id or slug', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(ID_ROUTES.length - 1), segment, async (i, id) => {
        const [who, method, path, body] = ID_ROUTES[i](f, id);
        await holdsContract(who, method, path, body);
      }),
      RUNS,
    );
  });

  it('any query parameters on the list endpoints', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(LIST_ROUTES.length - 1),
        fc.array(queryPair, { maxLength: 4 }),
        async (i, pairs) => {
          const [who, path] = LIST_ROUTES[i];
          const query = pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
          await holdsContract(who, 'GET', `${path(f)}?${query}`);
        },
      ),
      RUNS,
    );
  });

  it('any raw query string on the list endpoints', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(LIST_ROUTES.length - 1), rawQuery, async (i, query) => {
        const [who, path] = LIST_ROUTES[i];
        await holdsContract(who, 'GET', `${path(f)}?${query}`);
      }),
      RUNS,
    );
  });
});
