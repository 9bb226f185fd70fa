import { afterAll, describe, expect, it } from '@jest/globals';
import { TENANT_PROVIDER_SCOPES } from '../../config/configuration.js';
import { createTenant, seedProjects } from '../support/factories.js';
import { startTestApp, TestApp } from '../support/test-app.js';

/** Every TENANT_PROVIDER_SCOPE hands each request its own tenant, including under concurrency. */
const apps: TestApp[] = [];
afterAll(async () => {
  for (const a of apps) await a.close();
});

describe.each(TENANT_PROVIDER_SCOPES)('TENANT_PROVIDER_SCOPE=%s', (scope) => {
  it('serves interleaved requests of tenants on every tier, each with only its own rows', async () => {
    const t = await startTestApp({ env: { TENANT_PROVIDER_SCOPE: scope, DB_POOL_MAX: '3' } });
    apps.push(t);
    const tenants = [
      await createTenant(t, { tier: 'shared' }),
      await createTenant(t, { tier: 'shared' }),
      await createTenant(t, { tier: 'schema' }),
      await createTenant(t, { tier: 'dedicated' }),
    ];
    for (const x of tenants) await seedProjects(x, 2, 0);
    const rounds = await Promise.all(
      Array.from({ length: 80 }, (_, i) => {
        const x = tenants[i % tenants.length];
        return x.owner.get(`/orgs/${x.slug}/projects`).then((res) => ({ x, res }));
      }),
    );
    for (const { x, res } of rounds) {
      expect(res.status).toBe(200);
      expect(res.body.items).toHaveLength(2);
      for (const p of res.body.items) expect(p.name.startsWith(x.slug)).toBe(true);
    }
    const outsider = await t.login(`outsider-${scope}@x.test`);
    expect((await outsider.get(`/orgs/${tenants[0].slug}/projects`)).status).toBe(404);
  });
});
