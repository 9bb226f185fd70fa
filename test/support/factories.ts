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
}

export function uniqueSlug(prefix = 't'): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/** Provisions a tenant through the API as the platform admin, and signs its owner in. */
export async function createTenant(t: TestApp, opts: TenantOptions): Promise<TenantFixture> {
  const slug = opts.slug ?? uniqueSlug(opts.tier);
  const ownerEmail = opts.ownerEmail ?? `owner@${slug}.test`;
  const admin = await t.admin();
  const res = await admin.post('/tenants', { slug, name: `Tenant ${slug}`, tier: opts.tier, ownerEmail, server: opts.server });
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
