import { describe, expect, it } from '@jest/globals';
import { isAtLeast, planRollout, RolloutPlacement } from './migration-rollout.js';

const LATEST = '0003_c.sql';

function own(slug: string, recorded: RolloutPlacement['recorded'] = null): RolloutPlacement {
  return { tier: 'schema', serverKey: 'primary', database: 'db', schema: `t_${slug}`, tenantId: slug, tenantSlug: slug, recorded };
}
const shared = (recorded: RolloutPlacement['recorded'] = null): RolloutPlacement => ({
  tier: 'shared',
  serverKey: 'primary',
  database: 'db',
  schema: 'tenant_data',
  tenantId: null,
  tenantSlug: null,
  recorded,
});
const slugs = (waves: RolloutPlacement[][]) => waves.map((w) => w.map((p) => p.tenantSlug ?? 'shared'));
const many = (n: number) => Array.from({ length: n }, (_, i) => own(`p${i}`));

describe('planRollout', () => {
  it('sizes the waves, puts everything left in one more, and the shared placement last on its own', () => {
    const plan = planRollout(shared(), many(15), { latest: LATEST, waves: [1, 10] });
    expect(slugs(plan.waves)).toEqual([
      ['p0'],
      ['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8', 'p9', 'p10'],
      ['p11', 'p12', 'p13', 'p14'],
      ['shared'],
    ]);
    expect(plan.upToDate).toEqual([]);
  });

  it('makes fewer waves when there are fewer placements than the sizes', () => {
    expect(slugs(planRollout(shared(), many(3), { latest: LATEST, waves: [1, 10] }).waves)).toEqual([['p0'], ['p1', 'p2'], ['shared']]);
    expect(slugs(planRollout(shared(), [], { latest: LATEST, waves: [1, 10] }).waves)).toEqual([['shared']]);
  });

  it('puts the named canaries first, in place of the first size, once each', () => {
    const plan = planRollout(shared(), many(6), { latest: LATEST, waves: [1, 2], canaries: ['p4', 'p2', 'p4'] });
    expect(slugs(plan.waves)).toEqual([['p4', 'p2'], ['p0', 'p1'], ['p3', 'p5'], ['shared']]);
  });

  it('leaves out placements recorded ok at the latest version (or newer) unless recheck, and the canary is the oldest that needs work', () => {
    const placements = [own('a', { status: 'ok', version: LATEST }), own('b', { status: 'ok', version: '0004_newer.sql' }), own('c', { status: 'ok', version: '0002_b.sql' }), own('d', { status: 'failed', version: LATEST }), own('e', { status: 'pending', version: LATEST })];
    const plan = planRollout(shared({ status: 'ok', version: LATEST }), placements, { latest: LATEST, waves: [1] });
    expect(slugs(plan.waves)).toEqual([['c'], ['d', 'e']]);
    expect(plan.upToDate.map((p) => p.tenantSlug ?? 'shared')).toEqual(['a', 'b', 'shared']);
    const recheck = planRollout(shared({ status: 'ok', version: LATEST }), placements, { latest: LATEST, waves: [1], recheck: true });
    expect(slugs(recheck.waves)).toEqual([['a'], ['b', 'c', 'd', 'e'], ['shared']]);
    expect(recheck.upToDate).toEqual([]);
  });

  it('compares versions as migration names sort', () => {
    expect(isAtLeast('0010_x.sql', '0009_y.sql')).toBe(true);
    expect(isAtLeast('0009_y.sql', '0010_x.sql')).toBe(false);
    expect(isAtLeast(null, '0001_a.sql')).toBe(false);
    expect(isAtLeast(null, null)).toBe(true);
  });
});
