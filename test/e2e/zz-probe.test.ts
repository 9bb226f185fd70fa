import { afterAll, beforeAll, it } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import Stripe from 'stripe';
import type { HttpClient, TestResponse } from '../../libs/testing/index.js';
import { createTenant, TenantFixture } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

const SECRET = `whsec_${randomBytes(24).toString('hex')}`;
let t: TestApp;
let admin: HttpClient;
let A: TenantFixture; // free, shared
let B: TenantFixture; // pro, shared (the "other" tenant)
let S: TenantFixture; // pro, schema
const log: any[] = [];
const anomalies: any[] = [];

beforeAll(async () => {
  t = await startTestApp({ env: { STRIPE_WEBHOOK_SECRET: SECRET, LIFECYCLE_SWEEP_INTERVAL_MS: '0', USAGE_FLUSH_INTERVAL_MS: '200' } });
  admin = await t.admin();
  A = await createTenant(t, { tier: 'shared', plan: 'free' });
  B = await createTenant(t, { tier: 'shared', plan: 'pro' });
  S = await createTenant(t, { tier: 'schema', plan: 'pro' });
}, 120_000);
afterAll(async () => {
  writeFileSync('/tmp/zz-probe-out.json', JSON.stringify({ anomalies, log }, null, 1));
  await t?.close();
});

const q = <T = Record<string, any>>(sql: string, params: unknown[] = []) => t.ownerQuery<T>(sql, params);

/** Records a response; flags 5xx, bad error shape, stacks, and foreign tenant ids/slugs. */
function check(label: string, res: TestResponse<any>, opts: { foreign?: TenantFixture[]; expect?: number } = {}) {
  const text = typeof res.body === 'string' ? res.body : JSON.stringify(res.body ?? null);
  const problems: string[] = [];
  if (res.status >= 500) problems.push('5xx');
  if (res.status >= 400) {
    const b = res.body ?? {};
    for (const k of ['status', 'code', 'message', 'requestId']) if (!(k in b)) problems.push(`missing ${k}`);
  }
  if (/\bat [\w.<>]+ \(|node_modules|\.ts:\d+|\.js:\d+|stack/i.test(text)) problems.push('stack?');
  for (const f of opts.foreign ?? []) {
    if (text.includes(f.id)) problems.push(`foreign id ${f.slug}`);
    if (text.includes(f.slug)) problems.push(`foreign slug ${f.slug}`);
  }
  if (opts.expect !== undefined && res.status !== opts.expect) problems.push(`expected ${opts.expect}`);
  const entry = { label, status: res.status, body: text.slice(0, 400), problems };
  log.push(entry);
  if (problems.length) anomalies.push(entry);
  return res;
}

async function billingState(id: string) {
  return {
    billing: await q('SELECT * FROM control.organization_billing WHERE tenant_id = $1', [id]),
    platform: (await q(`SELECT count(*)::int n FROM control.platform_audit_log WHERE tenant_id = $1 AND action LIKE 'billing.%'`, [id]))[0].n,
    outbox: (await q('SELECT count(*)::int n FROM control.audit_outbox WHERE tenant_id = $1', [id]))[0].n,
  };
}
async function everything() {
  return {
    billing: await q('SELECT * FROM control.organization_billing ORDER BY tenant_id'),
    events: await q('SELECT id, type, tenant_id, outcome, detail FROM control.billing_events ORDER BY id'),
    platform: (await q(`SELECT count(*)::int n FROM control.platform_audit_log WHERE action LIKE 'billing.%'`))[0].n,
    tenants: (await q('SELECT count(*)::int n FROM control.tenants'))[0].n,
    users: (await q('SELECT count(*)::int n FROM control.users'))[0].n,
  };
}
function same(label: string, before: unknown, after: unknown) {
  const a = JSON.stringify(before);
  const b = JSON.stringify(after);
  if (a !== b) anomalies.push({ label, problems: ['state changed'], before: a.slice(0, 1500), after: b.slice(0, 1500) });
}

async function member(tenant: TenantFixture, role: string): Promise<HttpClient> {
  const email = `${role}-${randomBytes(3).toString('hex')}@${tenant.slug}.test`;
  const r = await tenant.owner.post(`/orgs/${tenant.slug}/members`, { email, role });
  if (r.status !== 201) throw new Error(`member ${role}: ${r.status} ${JSON.stringify(r.body)}`);
  return t.login(email);
}

it('plans and org billing', async () => {
  check('GET /plans anon', await t.http.get('/plans'));
  check('GET /plans owner', await A.owner.get('/plans'), { expect: 200 });
  check('GET /plans?x=1', await A.owner.get('/plans?x=1&limit=abc'));
  const roles: Record<string, HttpClient> = {};
  for (const r of ['admin', 'member', 'viewer', 'billing']) roles[r] = await member(A, r);
  check('org billing owner', await A.owner.get(`/orgs/${A.slug}/billing`), { foreign: [B, S], expect: 200 });
  for (const [r, c] of Object.entries(roles)) check(`org billing ${r}`, await c.get(`/orgs/${A.slug}/billing`), { foreign: [B, S] });
  check('org billing non-member (B owner on A)', await B.owner.get(`/orgs/${A.slug}/billing`), { foreign: [B] });
  check('org billing X-Tenant mismatch', await A.owner.withHeaders({ 'x-tenant': B.slug }).get(`/orgs/${A.slug}/billing`), { foreign: [B] });
  check('org billing platform admin non-member', await admin.get(`/orgs/${A.slug}/billing`));
  for (const slug of ['UPPER', 'a'.repeat(1000), encodeURIComponent('ünï'), encodeURIComponent("x'; drop table x;--"), 'nope-nope-nope', '%00', '%ff']) {
    check(`org billing slug ${slug.slice(0, 30)}`, await A.owner.get(`/orgs/${slug}/billing`), { foreign: [B, S] });
  }
  check('org billing PUT (no route)', await A.owner.request('PUT', `/orgs/${A.slug}/billing`, { plan: 'enterprise' }));
  check('org billing POST (no route)', await A.owner.post(`/orgs/${A.slug}/billing`, { plan: 'enterprise' }));
  check('org billing usage by billing member', await roles.billing.get(`/orgs/${A.slug}/usage`), { foreign: [B, S] });
  check('org usage member', await roles.member.get(`/orgs/${A.slug}/usage`));
  check('org usage viewer', await roles.viewer.get(`/orgs/${A.slug}/usage`));
  check('org usage admin', await roles.admin.get(`/orgs/${A.slug}/usage`), { expect: 200 });
  check('org usage non-member', await B.owner.get(`/orgs/${A.slug}/usage`), { foreign: [B] });
}, 120_000);

it('admin billing GET/PUT', async () => {
  const id = A.id;
  check('GET tenants billing owner (not admin)', await A.owner.get(`/tenants/${id}/billing`));
  check('PUT tenants billing owner (not admin)', await A.owner.request('PUT', `/tenants/${id}/billing`, { plan: 'enterprise' }));
  for (const bad of [randomUUID(), 'not-a-uuid', id.toUpperCase(), `${id}x`, '00000000-0000-0000-0000-000000000000', "1' OR '1'='1", 'a'.repeat(5000)]) {
    check(`GET billing id ${bad.slice(0, 40)}`, await admin.get(`/tenants/${encodeURIComponent(bad)}/billing`));
    const before = await everything();
    check(`PUT billing id ${bad.slice(0, 40)}`, await admin.request('PUT', `/tenants/${encodeURIComponent(bad)}/billing`, { plan: 'pro' }));
    same(`PUT billing id ${bad.slice(0, 40)}`, before, await everything());
  }
  const bodies: Array<[string, unknown]> = [
    ['empty', {}],
    ['plan number', { plan: 1 }],
    ['plan array', { plan: ['pro'] }],
    ['plan object', { plan: { key: 'pro' } }],
    ['plan null', { plan: null }],
    ['plan empty', { plan: '' }],
    ['plan PRO', { plan: 'PRO' }],
    ['plan Pro', { plan: 'Pro' }],
    ['plan unknown', { plan: 'platinum' }],
    ['plan 41 chars', { plan: 'a'.repeat(41) }],
    ['plan huge', { plan: 'a'.repeat(200_000) }],
    ['plan unicode', { plan: 'pró' }],
    ['plan sql', { plan: "pro'; drop table control.plans;--" }],
    ['plan with NUL', { plan: 'pro\u0000' }],
    ['plan __proto__', { plan: '__proto__' }],
    ['plan constructor', { plan: 'constructor' }],
    ['plan toString', { plan: 'tostring' }],
    ['status bogus', { plan: 'pro', status: 'bogus' }],
    ['status number', { plan: 'pro', status: 1 }],
    ['status array', { plan: 'pro', status: ['active'] }],
    ['status ACTIVE', { plan: 'pro', status: 'ACTIVE' }],
    ['status unpaid', { plan: 'pro', status: 'unpaid' }],
    ['reason empty', { plan: 'pro', reason: '' }],
    ['reason 501', { plan: 'pro', reason: 'x'.repeat(501) }],
    ['reason NUL', { plan: 'pro', reason: 'a\u0000b' }],
    ['reason number', { plan: 'pro', reason: 5 }],
    ['reason object', { plan: 'pro', reason: { a: 1 } }],
    ['extra field', { plan: 'pro', seats: 5 }],
    ['proto pollution', JSON.parse('{"plan":"pro","__proto__":{"status":"past_due"}}')],
    ['body array', [{ plan: 'pro' }]],
    ['body string', '"pro"'],
    ['body null', 'null'],
    ['body number', '5'],
    ['body invalid json', '{plan:'],
    ['deep', { plan: 'pro', reason: JSON.parse('['.repeat(100) + ']'.repeat(100)) }],
  ];
  for (const [label, body] of bodies) {
    const before = await everything();
    check(`PUT ${label}`, await admin.request('PUT', `/tenants/${id}/billing`, body), { foreign: [B, S] });
    same(`PUT ${label}`, before, await everything());
  }
  // schema tenant to free: PLAN_TIER_NOT_ALLOWED, nothing changes
  {
    const before = await everything();
    check('PUT schema tenant free', await admin.request('PUT', `/tenants/${S.id}/billing`, { plan: 'free', status: 'past_due' }), { expect: 403 });
    same('PUT schema tenant free', before, await everything());
  }
  // every plan x status combination
  for (const plan of ['free', 'pro', 'enterprise']) {
    for (const status of [undefined, 'trialing', 'active', 'past_due', 'canceled', null]) {
      check(`PUT A ${plan}/${status}`, await admin.request('PUT', `/tenants/${id}/billing`, { plan, status, reason: `probe ${plan} ${status}` }), { foreign: [B, S] });
      const g = check(`GET A after ${plan}/${status}`, await admin.get(`/tenants/${id}/billing`), { foreign: [B, S] });
      const org = check(`org billing after ${plan}/${status}`, await A.owner.get(`/orgs/${A.slug}/billing`), { foreign: [B, S] });
      if (g.body?.plan?.key !== plan) anomalies.push({ label: `plan not applied ${plan}/${status}`, body: g.body });
      if (org.status === 200 && org.body.plan.key !== plan) anomalies.push({ label: `org view stale ${plan}/${status}`, body: org.body });
    }
  }
  // a project creation while past_due (grace): allowed
  check('PUT past_due back', await admin.request('PUT', `/tenants/${id}/billing`, { plan: 'free', status: 'active' }));
}, 300_000);

it('plan limits on tenant routes', async () => {
  // A is free: 3 projects, 100 tasks per project, 3 seats (already owner + 4 members -> over)
  const before = await everything();
  const email = `newbie-${randomBytes(3).toString('hex')}@x.test`;
  const m = check('add member over seats', await A.owner.post(`/orgs/${A.slug}/members`, { email, role: 'member' }), { foreign: [B, S] });
  const after = await everything();
  const userRows = await q('SELECT id FROM control.users WHERE email = $1', [email]);
  log.push({ label: 'user after refused member add', status: m.status, userRows: userRows.length, usersBefore: before.users, usersAfter: after.users });
  if (m.status >= 400 && userRows.length) anomalies.push({ label: 'refused member add left a control.users row', request: `POST /orgs/${A.slug}/members`, status: m.status, body: m.body });
  for (const [label, body] of [
    ['member email number', { email: 5, role: 'member' }],
    ['member email array', { email: ['a@b.c'], role: 'member' }],
    ['member role owner', { email: 'o@x.test', role: 'owner' }],
    ['member role bogus', { email: 'o@x.test', role: 'ROOT' }],
    ['member email huge', { email: `${'a'.repeat(300)}@x.test`, role: 'member' }],
  ] as Array<[string, unknown]>) check(label, await A.owner.post(`/orgs/${A.slug}/members`, body), { foreign: [B, S] });

  const projects: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = check(`project ${i}`, await A.owner.post(`/orgs/${A.slug}/projects`, { name: `p${i}` }), { foreign: [B, S] });
    if (r.status === 201) projects.push(r.body.id);
  }
  const count = await q(`SELECT count(*)::int n FROM public.projects WHERE tenant_id = $1`, [A.id]).catch((e) => [{ n: String(e.message) }]);
  log.push({ label: 'A projects rows', count });
  for (const [label, body] of [
    ['project name number', { name: 5 }],
    ['project name array', { name: ['x'] }],
    ['project name null', { name: null }],
    ['project name huge', { name: 'x'.repeat(100_000) }],
  ] as Array<[string, unknown]>) check(label, await A.owner.post(`/orgs/${A.slug}/projects`, body));
  if (projects.length) {
    const pid = projects[0];
    check('task ok', await A.owner.post(`/orgs/${A.slug}/projects/${pid}/tasks`, { title: 't' }), { foreign: [B, S] });
    check('task unknown project', await A.owner.post(`/orgs/${A.slug}/projects/${randomUUID()}/tasks`, { title: 't' }));
    check('task bad project id', await A.owner.post(`/orgs/${A.slug}/projects/abc/tasks`, { title: 't' }));
    check('task title number', await A.owner.post(`/orgs/${A.slug}/projects/${pid}/tasks`, { title: 7 }));
    check('task status bogus', await A.owner.post(`/orgs/${A.slug}/projects/${pid}/tasks`, { title: 't', status: 'x' }));
    // B's project through A's slug
    const bp = await B.owner.post(`/orgs/${B.slug}/projects`, { name: 'bp' });
    check('task on B project via A', await A.owner.post(`/orgs/${A.slug}/projects/${bp.body.id}/tasks`, { title: 't' }), { foreign: [B] });
    // fill to 100 tasks (free) then one more
    const tasksBefore = await A.owner.get(`/orgs/${A.slug}/projects/${pid}/tasks?limit=200`);
    const have = Array.isArray(tasksBefore.body?.items) ? tasksBefore.body.items.length : 1;
    await Promise.all(Array.from({ length: 100 - have }, (_, i) => A.owner.post(`/orgs/${A.slug}/projects/${pid}/tasks`, { title: `f${i}` })));
    const burst = await Promise.all(Array.from({ length: 5 }, () => A.owner.post(`/orgs/${A.slug}/projects/${pid}/tasks`, { title: 'over' })));
    burst.forEach((r, i) => check(`task over limit ${i}`, r, { foreign: [B, S] }));
  }
  // suspended and pending-deletion tenants
  const Z = await createTenant(t, { tier: 'shared', plan: 'free' });
  check('suspend Z', await admin.post(`/tenants/${Z.id}/suspend`, { reason: 'probe' }));
  check('suspended org billing', await Z.owner.get(`/orgs/${Z.slug}/billing`));
  check('suspended org usage', await Z.owner.get(`/orgs/${Z.slug}/usage`));
  check('suspended project create', await Z.owner.post(`/orgs/${Z.slug}/projects`, { name: 'x' }));
  check('suspended admin billing GET', await admin.get(`/tenants/${Z.id}/billing`));
  check('suspended admin billing PUT', await admin.request('PUT', `/tenants/${Z.id}/billing`, { plan: 'pro', status: 'active' }));
  check('suspended admin usage', await admin.get(`/tenants/${Z.id}/usage`));
  check('delete Z', await admin.delete(`/tenants/${Z.id}`));
  check('pending-deletion org billing', await Z.owner.get(`/orgs/${Z.slug}/billing`));
  check('pending-deletion org usage', await Z.owner.get(`/orgs/${Z.slug}/usage`));
  check('pending-deletion member add', await Z.owner.post(`/orgs/${Z.slug}/members`, { email: 'pd@x.test', role: 'member' }));
  check('pending-deletion admin billing PUT', await admin.request('PUT', `/tenants/${Z.id}/billing`, { plan: 'enterprise', status: 'past_due' }));
  check('pending-deletion admin usage', await admin.get(`/tenants/${Z.id}/usage`));
  // read-only (past due beyond grace)
  const R = await createTenant(t, { tier: 'shared', plan: 'pro' });
  await q(`UPDATE control.organization_billing SET status='past_due', past_due_since = now() - interval '30 days' WHERE tenant_id = $1`, [R.id]);
  await new Promise((r) => setTimeout(r, 300));
  check('read-only project create', await R.owner.post(`/orgs/${R.slug}/projects`, { name: 'x' }));
  check('read-only org billing', await R.owner.get(`/orgs/${R.slug}/billing`));
  check('read-only member add', await R.owner.post(`/orgs/${R.slug}/members`, { email: `ro-${randomBytes(2).toString('hex')}@x.test`, role: 'member' }));
  check('read-only usage', await R.owner.get(`/orgs/${R.slug}/usage`));
  // POST /tenants with plan
  for (const [label, body] of [
    ['plan number', { plan: 5 }],
    ['plan null', { plan: null }],
    ['plan array', { plan: ['pro'] }],
    ['plan PRO', { plan: 'PRO' }],
    ['plan unknown', { plan: 'gold' }],
    ['plan empty', { plan: '' }],
    ['plan sql', { plan: "pro' --" }],
    ['plan free schema', { plan: 'free', tier: 'schema' }],
    ['plan free dedicated', { plan: 'free', tier: 'dedicated' }],
    ['plan pro dedicated', { plan: 'pro', tier: 'dedicated' }],
    ['plan ok enterprise schema', { plan: 'enterprise', tier: 'schema' }],
  ] as Array<[string, Record<string, unknown>]>) {
    const slug = `pp-${randomBytes(4).toString('hex')}`;
    const ownerEmail = `o@${slug}.test`;
    const before2 = await everything();
    const r = check(`POST /tenants ${label}`, await admin.post('/tenants', { slug, name: slug, tier: 'shared', ownerEmail, ...body }));
    if (r.status >= 400) {
      same(`POST /tenants ${label}`, before2, await everything());
      const left = await q('SELECT id FROM control.tenants WHERE slug = $1', [slug]);
      if (left.length) anomalies.push({ label: `tenant row left after refused POST /tenants ${label}` });
    }
  }
  check('POST /tenants plan as owner', await A.owner.post('/tenants', { slug: `pp-${randomBytes(4).toString('hex')}`, name: 'x', tier: 'shared', ownerEmail: 'q@x.test', plan: 'enterprise' }));
}, 300_000);

it('usage', async () => {
  await A.owner.get(`/orgs/${A.slug}/projects`);
  await new Promise((r) => setTimeout(r, 600));
  const ranges = [
    '', '?from=2024-01-01&to=2024-01-31', '?from=0000-01-01', '?to=0000-01-01', '?from=0001-01-01&to=0001-12-31', '?from=0100-01-01&to=0100-12-31',
    '?to=9999-12-31', '?from=9999-12-01&to=9999-12-31', '?from=9999-12-31', '?from=2024-02-30', '?from=2024-1-1', '?to=2024-13-01', '?from=2024-02-29&to=2024-02-29',
    '?from=2024-01-02&to=2024-01-01', '?from=2023-01-01&to=2024-12-31', '?from=2024-01-01&from=2024-01-02', '?from[]=2024-01-01', '?from=%00', '?from=2024-01-01T00:00:00Z',
    `?from=${'9'.repeat(5000)}`, "?from=2024-01-01'--", '?from=%E2%80%8B2024-01-01', '?from=２０２４-01-01', '?foo=bar', '?from=', '?to=', '?from=+2024-01-01', '?from=-2024-01-01',
    '?from=2024-01-01&to=2025-01-01', '?from=2024-01-01&to=2025-01-02', '?from=1970-01-01&to=1970-01-01', '?to=1582-10-10',
  ];
  for (const r of ranges) {
    check(`org usage ${r}`, await A.owner.get(`/orgs/${A.slug}/usage${r}`), { foreign: [B, S] });
    check(`admin usage ${r}`, await admin.get(`/tenants/${A.id}/usage${r}`), { foreign: [B, S] });
  }
  for (const id of [randomUUID(), 'x', A.id.toUpperCase(), '00000000-0000-0000-0000-000000000000']) check(`admin usage id ${id}`, await admin.get(`/tenants/${encodeURIComponent(id)}/usage`));
  check('tenant usage by owner (not admin)', await A.owner.get(`/tenants/${A.id}/usage`));
  check('usage top by owner (not admin)', await A.owner.get(`/tenants/usage/top`));
  const tops = [
    '', '?by=requests', '?by=db_time', '?by=DB_TIME', '?by=', '?by=__proto__', '?by=constructor', '?by=requests&by=db_time', "?by=requests;drop",
    '?limit=0', '?limit=-1', '?limit=1e9', '?limit=abc', '?limit=1.5', '?limit=', '?limit=100', '?limit=101', '?limit=1', '?limit=1e2', '?limit=0x10', '?limit=%20', '?limit=Infinity', '?limit=NaN',
    '?limit=1&limit=2', '?limit[]=1', '?from=2024-02-30', '?from=9999-12-31', '?to=9999-12-31', '?from=0100-01-01&to=0100-01-02', '?foo=1',
  ];
  for (const r of tops) check(`top ${r}`, await admin.get(`/tenants/usage/top${r}`));
}, 300_000);

it('metrics', async () => {
  await A.owner.get(`/orgs/${A.slug}/projects`);
  await A.owner.get(`/orgs/${A.slug}/nope/${A.id}`);
  await A.owner.get(`/something/${A.slug}`);
  const m = await t.http.get('/metrics');
  const text = String(m.body);
  const leaks = [A, B, S].filter((x) => text.includes(x.id) || text.includes(x.slug)).map((x) => x.slug);
  log.push({ label: 'metrics', status: m.status, leaks, length: text.length });
  if (m.status !== 200 || leaks.length) anomalies.push({ label: 'metrics', status: m.status, leaks });
  check('metrics POST', await t.http.post('/metrics', {}));
  check('metrics ?x', await t.http.get('/metrics?name[]=a'));
}, 60_000);

// ---- Stripe ----
const nowS = () => Math.floor(Date.now() / 1000);
const rid = (p: string) => `${p}_${randomBytes(8).toString('hex')}`;
function sub(o: Record<string, any> = {}, item: Record<string, any> = {}) {
  return {
    id: rid('sub'), object: 'subscription', customer: rid('cus'), status: 'active', trial_end: null, metadata: {},
    items: { object: 'list', data: [{ id: rid('si'), object: 'subscription_item', quantity: 1, current_period_end: nowS() + 86400 * 30, price: { id: rid('price'), lookup_key: 'pro' }, ...item }] },
    ...o,
  };
}
function evt(type: string, object: unknown, extra: Record<string, unknown> = {}) {
  return { id: rid('evt'), object: 'event', created: nowS(), type, data: { object }, ...extra };
}
async function deliver(body: unknown) {
  const payload = typeof body === 'string' ? body : JSON.stringify(body);
  const sig = Stripe.webhooks.generateTestHeaderString({ payload, secret: SECRET });
  return t.http.withHeaders({ 'content-type': 'application/json', 'stripe-signature': sig }).request('POST', '/webhooks/stripe', payload);
}

it('stripe webhooks', async () => {
  // Give B a customer and subscription.
  const bCus = rid('cus');
  const bSub = rid('sub');
  check('B subscribe', await deliver(evt('customer.subscription.created', sub({ id: bSub, customer: bCus, metadata: { tenant_id: B.id } }))), { expect: 200 });
  const W = await createTenant(t, { tier: 'shared', plan: 'free' });
  const cases: Array<[string, unknown]> = [
    ['customer number', evt('customer.subscription.updated', sub({ customer: 123, metadata: { tenant_id: W.id } }))],
    ['customer object', evt('customer.subscription.updated', sub({ customer: { id: rid('cus') }, metadata: { tenant_id: W.id } }))],
    ['customer unicode', evt('customer.subscription.updated', sub({ customer: 'cus_ü', metadata: { tenant_id: W.id } }))],
    ['customer 256', evt('customer.subscription.updated', sub({ customer: 'c'.repeat(256), metadata: { tenant_id: W.id } }))],
    ['items.data empty', evt('customer.subscription.updated', sub({ items: { data: [] }, metadata: { tenant_id: W.id } }))],
    ['items missing', evt('customer.subscription.updated', sub({ items: undefined, metadata: { tenant_id: W.id } }))],
    ['items.data object', evt('customer.subscription.updated', sub({ items: { data: { a: 1 } }, metadata: { tenant_id: W.id } }))],
    ['items.data [null,1]', evt('customer.subscription.updated', sub({ items: { data: [null, 1, 'x'] }, metadata: { tenant_id: W.id } }))],
    ['quantity -1', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { quantity: -1 }))],
    ['quantity string', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { quantity: '5' }))],
    ['quantity 1.5', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { quantity: 1.5 }))],
    ['quantity 2^31', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { quantity: 2 ** 31 }))],
    ['quantity 1e20', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { quantity: 1e20 }))],
    ['period_end string', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { current_period_end: '2030-01-01' }))],
    ['period_end 1e15', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { current_period_end: 1e15 }))],
    ['period_end -1e12', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { current_period_end: -1e12 }))],
    ['period_end 1.5', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { current_period_end: 1.5 }))],
    ['legacy period_end 1e15', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id }, current_period_end: 1e15 }, { current_period_end: undefined }))],
    ['trial_end 1e15', evt('customer.subscription.updated', sub({ status: 'trialing', trial_end: 1e15, metadata: { tenant_id: W.id } }))],
    ['trial_end -1e12', evt('customer.subscription.updated', sub({ status: 'trialing', trial_end: -1e12, metadata: { tenant_id: W.id } }))],
    ['trial_end string', evt('customer.subscription.updated', sub({ status: 'trialing', trial_end: 'soon', metadata: { tenant_id: W.id } }))],
    ['created 1e15', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }), { created: 1e15 })],
    ['created -1e12', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }), { created: -1e12 })],
    ['created string', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }), { created: '123' })],
    ['created 1.5', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }), { created: 1.5 })],
    ['unknown type NUL', evt('foo.\u0000bar', { object: 'x' })],
    ['status with NUL', evt('customer.subscription.updated', sub({ status: 'act\u0000ive', metadata: { tenant_id: W.id } }))],
    ['lookup_key with NUL', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { price: { lookup_key: 'gold\u0000' } }))],
    ['metadata.plan NUL', evt('customer.subscription.updated', sub({ items: { data: [] }, metadata: { tenant_id: W.id, plan: 'x\u0000' } }))],
    ['status number', evt('customer.subscription.updated', sub({ status: 1, metadata: { tenant_id: W.id } }))],
    ['status unknown', evt('customer.subscription.updated', sub({ status: 'weird', metadata: { tenant_id: W.id } }))],
    ['status huge', evt('customer.subscription.updated', sub({ status: 'w'.repeat(100_000), metadata: { tenant_id: W.id } }))],
    ['lookup_key huge', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { price: { lookup_key: 'k'.repeat(100_000) } }))],
    ['plan PRO', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { price: { lookup_key: 'PRO' } }))],
    ['plan enterprise', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id } }, { price: { lookup_key: 'enterprise' } }))],
    ['tenant_id non-uuid', evt('customer.subscription.updated', sub({ metadata: { tenant_id: 'abc' } }))],
    ['tenant_id number', evt('customer.subscription.updated', sub({ metadata: { tenant_id: 5 } }))],
    ['tenant_id uppercase', evt('customer.subscription.updated', sub({ metadata: { tenant_id: W.id.toUpperCase() } }))],
    ['tenant_id unknown', evt('customer.subscription.updated', sub({ metadata: { tenant_id: randomUUID() } }))],
    ['metadata array', evt('customer.subscription.updated', sub({ metadata: [W.id] }))],
    ["tenant_id=B, B's customer differs", evt('customer.subscription.updated', sub({ metadata: { tenant_id: B.id } }, { price: { lookup_key: 'free' } }))],
    ["tenant_id=W, B's customer", evt('customer.subscription.updated', sub({ customer: bCus, metadata: { tenant_id: W.id } }))],
    ["tenant_id=W, B's subscription", evt('customer.subscription.updated', sub({ id: bSub, metadata: { tenant_id: W.id } }))],
    ["deleted B's sub, tenant_id=W", evt('customer.subscription.deleted', sub({ id: bSub, customer: bCus, metadata: { tenant_id: W.id } }))],
    ['invoice customer number', evt('invoice.payment_failed', { id: rid('in'), object: 'invoice', customer: 5 })],
    ['invoice no sub', evt('invoice.payment_failed', { id: rid('in'), object: 'invoice', customer: rid('cus'), metadata: { tenant_id: W.id } })],
    ['invoice sub number', evt('invoice.payment_failed', { id: rid('in'), object: 'invoice', customer: rid('cus'), subscription: 5, metadata: { tenant_id: W.id } })],
    ["invoice B's sub tenant W", evt('invoice.payment_failed', { id: rid('in'), object: 'invoice', customer: bCus, subscription: bSub, metadata: { tenant_id: W.id } })],
    ['invoice id number', evt('invoice.payment_failed', { id: 5, object: 'invoice', customer: rid('cus') })],
    ['invoice id huge', evt('invoice.payment_failed', { id: 'i'.repeat(100_000), object: 'invoice', customer: rid('cus') })],
    ['object wrong', evt('customer.subscription.updated', { object: 'invoice', id: 'x', customer: 'c' })],
    ['data.object array', evt('customer.subscription.updated', [1])],
    ['data missing', { id: rid('evt'), object: 'event', created: nowS(), type: 'customer.subscription.updated' }],
    ['event id unicode', evt('customer.subscription.updated', sub(), { id: 'evt_ü' })],
    ['event id 256', evt('customer.subscription.updated', sub(), { id: 'e'.repeat(256) })],
    ['type 255 unknown', evt('x'.repeat(255), {})],
    ['type 256', evt('x'.repeat(256), {})],
    ['body array', [1, 2]],
    ['body string', '"x"'],
    ['body null', 'null'],
    ['body huge', evt('foo.bar', { pad: 'x'.repeat(3_000_000) })],
  ];
  for (const [label, body] of cases) {
    const before = await everything();
    const res = check(`webhook ${label}`, await deliver(body), { foreign: [A, B, S, W] });
    const after = await everything();
    if (res.status >= 400) same(`webhook ${label} (refused)`, before, after);
    const wRow = await q('SELECT plan_key, status, seats, current_period_end, trial_ends_at, provider_customer_id, provider_subscription_id, provider_event_at FROM control.organization_billing WHERE tenant_id=$1', [W.id]);
    const bRow = await q('SELECT plan_key, status, provider_customer_id, provider_subscription_id FROM control.organization_billing WHERE tenant_id=$1', [B.id]);
    const lastEvent = await q('SELECT id, tenant_id, outcome, detail FROM control.billing_events ORDER BY received_at DESC LIMIT 1');
    log.push({ label: `webhook ${label} state`, status: res.status, W: wRow[0], B: bRow[0], event: lastEvent[0] && { ...lastEvent[0], id: String(lastEvent[0].id).slice(0, 40), detail: String(lastEvent[0].detail).slice(0, 200) } });
    if (bRow[0].provider_customer_id !== bCus || bRow[0].provider_subscription_id !== bSub) anomalies.push({ label: `B's billing changed by ${label}`, B: bRow[0] });
    // reset W's provider_event_at so ordering does not hide later cases
    await q('UPDATE control.organization_billing SET provider_event_at = NULL WHERE tenant_id = $1', [W.id]);
  }
  check('W org billing at end', await W.owner.get(`/orgs/${W.slug}/billing`), { foreign: [A, B, S] });
  check('B org billing at end', await B.owner.get(`/orgs/${B.slug}/billing`), { foreign: [A, S, W] });
  check('admin W billing', await admin.get(`/tenants/${W.id}/billing`));
}, 300_000);
