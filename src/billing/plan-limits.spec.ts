import { describe, expect, it } from '@jest/globals';
import type { Plan } from './features.js';
import { limitReached } from './plan-limits.js';

const plan = { key: 'free', name: 'Free', rank: 10 } as Plan;

describe('limitReached', () => {
  it('says what the plan allows and what the tenant has, and carries feature, limit and usage', () => {
    const err = limitReached(plan, 'projects', 3, 5);
    expect(err).toMatchObject({ code: 'PLAN_LIMIT_REACHED', details: { feature: 'projects', limit: 3, usage: 5 } });
    expect(err.message).toBe('the free plan allows 3 projects; this tenant has 5. Upgrade the plan or delete one.');
  });

  it('counts tasks per project and seats in their own words, singular at one', () => {
    expect(limitReached(plan, 'tasks_per_project', 1, 1).message).toBe('the free plan allows 1 task per project; this project has 1. Upgrade the plan or delete one.');
    expect(limitReached(plan, 'seats', 1, 1).message).toBe('the free plan allows 1 seat; this tenant has 1. Upgrade the plan or remove a member.');
    expect(limitReached(plan, 'seats', 0, 2).message).toBe('the free plan allows 0 seats; this tenant has 2. Upgrade the plan or remove a member.');
  });
});
