import { randomBytes } from 'node:crypto';
import type { HttpClient } from '../../libs/testing/index.js';
import type { Tier } from '../../src/tenancy/tenant-route.js';
import type { TestApp } from './test-app.js';

export interface TenantFixture {
  id: string;
  slug: string;
  tier: Tier;
  ownerEmail: string;
  owner: HttpClient;
}

export interface TenantOptions {
  tier: Tier;
  slug?: string;
  ownerEmail?: string;
  server?: string;
  /** Billing plan; the test app's default is enterprise (no limits but the per-request ones). */
  plan?: string;
}

export function uniqueSlug(prefix = 't'): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/** Provisions a tenant through the API as the platform admin, and signs its owner in. */
export async function createTenant(t: TestApp, opts: TenantOptions): Promise<TenantFixture> {
  const slug = opts.slug ?? uniqueSlug(opts.tier);
  const ownerEmail = opts.ownerEmail ?? `owner@${slug}.test`;
  const admin = await t.admin();
  const res = await admin.post('/tenants', { slug, name: `Tenant ${slug}`, tier: opts.tier, ownerEmail, server: opts.server, plan: opts.plan });
  if (res.status !== 201) throw new Error(`tenant ${slug} not created: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.id, slug, tier: opts.tier, ownerEmail, owner: await t.login(ownerEmail) };
}

export interface SeededProject {
  id: string;
  name: string;
  taskIds: string[];
}

/** Projects with tasks, created through the API. */
export async function seedProjects(tenant: TenantFixture, count: number, tasksEach = 1): Promise<SeededProject[]> {
  const out: SeededProject[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${tenant.slug} project ${i}`;
    const p = await tenant.owner.post(`/orgs/${tenant.slug}/projects`, { name });
    if (p.status !== 201) throw new Error(`project not created: ${p.status} ${JSON.stringify(p.body)}`);
    const taskIds: string[] = [];
    for (let j = 0; j < tasksEach; j++) {
      const task = await tenant.owner.post(`/orgs/${tenant.slug}/projects/${p.body.id}/tasks`, { title: `${name} task ${j}` });
      if (task.status !== 201) throw new Error(`task not created: ${task.status} ${JSON.stringify(task.body)}`);
      taskIds.push(task.body.id);
    }
    out.push({ id: p.body.id, name, taskIds });
  }
  return out;
}

/** Polls a move's status resource until `done` says so (or fails the test after `timeoutMs`). */
export async function waitForMove(
  admin: HttpClient,
  tenantId: string,
  moveId: string,
  done: (move: Record<string, any>) => boolean = (m) => m.state !== 'running',
  timeoutMs = 30_000,
): Promise<Record<string, any>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await admin.get(`/tenants/${tenantId}/moves/${moveId}`);
    if (res.status !== 200) throw new Error(`move ${moveId}: ${res.status} ${JSON.stringify(res.body)}`);
    if (done(res.body)) return res.body;
    if (Date.now() > until) throw new Error(`move ${moveId} still ${res.body.phase}/${res.body.state} after ${timeoutMs} ms: ${JSON.stringify(res.body)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Moves a tenant through the API and waits for the flip; fails unless the move verified and flipped. */
export async function moveTenant(t: TestApp, tenant: { id: string }, tier: Tier, server?: string): Promise<Record<string, any>> {
  const admin = await t.admin();
  const res = await admin.post(`/tenants/${tenant.id}/move`, { tier, server });
  if (res.status !== 202) throw new Error(`move not started: ${res.status} ${JSON.stringify(res.body)}`);
  const move = await waitForMove(admin, tenant.id, res.body.id);
  if (!['flipped', 'cleaned'].includes(move.phase)) throw new Error(`move did not flip: ${JSON.stringify(move)}`);
  return move;
}
