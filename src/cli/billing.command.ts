import { Command, InvalidArgumentError } from 'commander';
import type { BillingService, BillingView } from '../billing/billing.service.js';
import type { Plan } from '../billing/features.js';
import { SLUG_PATTERN, SLUG_RULE } from '../tenancy/tenant-route.js';
import { formatTime, note, printTable } from './output.js';
import { loadCliConfig, withJwtSecret, withPreparedDatabases } from './session.js';

function parseSlug(value: string): string {
  if (!SLUG_PATTERN.test(value)) throw new InvalidArgumentError(SLUG_RULE);
  return value;
}

function parsePlan(value: string): string {
  if (!/^[a-z][a-z0-9_-]{0,39}$/.test(value)) throw new InvalidArgumentError('must be a plan key such as free, pro or enterprise');
  return value;
}

function parseReason(value: string): string {
  const length = [...value].length;
  if (value.includes('\u0000') || length < 1 || length > 500) throw new InvalidArgumentError('must be 1 to 500 characters');
  return value;
}

/** The API's own BillingService in an application context (no HTTP, no sweeper), after the app's start-up steps. */
async function withBilling<T>(fn: (billing: BillingService) => Promise<T>): Promise<T> {
  // Loaded only when a billing command runs: the whole app is not needed for --help.
  const [{ NestFactory }, { AppModule }, { BillingService }] = await Promise.all([
    import('@nestjs/core'),
    import('../app.module.js'),
    import('../billing/billing.service.js'),
  ]);
  const config = withJwtSecret(loadCliConfig());
  config.lifecycle.sweepIntervalMs = 0;
  return withPreparedDatabases(config, async (runtime) => {
    const app = await NestFactory.createApplicationContext(AppModule.forRoot(config, runtime), { logger: false, abortOnError: false });
    try {
      return await fn(app.get(BillingService));
    } finally {
      await app.close();
    }
  });
}

const limit = (v: number | null): string => (v === null ? 'unlimited' : String(v));
const time = (d: Date | null): string => (d ? formatTime(d) : '');

function printPlans(plans: Plan[]): void {
  const tiers = (p: Plan) => (['shared', 'schema', 'dedicated'] as const).filter((t) => p.flags[`tier_${t}`]).join(', ');
  printTable(
    ['plan', 'name', 'seats', 'projects', 'tasks/project', 'requests/min', 'statement timeout ms', 'concurrent', 'tiers'],
    plans.map((p) => [
      p.key,
      p.name,
      limit(p.limits.seats),
      limit(p.limits.projects),
      limit(p.limits.tasks_per_project),
      limit(p.limits.api_requests_per_minute),
      limit(p.limits.statement_timeout_ms),
      limit(p.limits.concurrent_requests),
      tiers(p),
    ]),
  );
}

function printBilling(v: BillingView): void {
  const s = v.state;
  printTable(
    ['field', 'value'],
    [
      ['tenant', `${v.slug} (${v.tenantId})`],
      ['plan', `${v.plan.key} (${v.plan.name})`],
      ['status', s.status],
      ['trial ends', time(s.trialEndsAt)],
      ['current period ends', time(s.currentPeriodEnd)],
      ['past due since', time(s.pastDueSince)],
      ['read-only', v.readOnly ? `yes, since ${time(v.readOnlySince)}` : v.readOnlySince ? `from ${time(v.readOnlySince)}` : 'no'],
      ['seats', `${v.seatsUsed} used of ${s.seats ?? '-'} bought (plan limit ${limit(v.plan.limits.seats)})`],
      ['stripe customer', s.providerCustomerId ?? ''],
      ['stripe subscription', s.providerSubscriptionId ?? ''],
      ['updated', formatTime(s.updatedAt)],
    ],
  );
}

/** billing show | set-plan */
export function billingCommand(): Command {
  const billing = new Command('billing').description("Show a tenant's billing (plan, status, seats) or set its plan");

  billing
    .command('show')
    .description("A tenant's plan, billing status, periods, seats, and whether it is read-only for non-payment")
    .argument('<slug>', 'the tenant', parseSlug)
    .addHelpText('after', '\nExamples:\n  $ npm run cli -- billing show acme')
    .action(async (slug: string) => {
      printBilling(await withBilling(async (b) => b.viewById(await b.idOf(slug))));
    });

  billing
    .command('set-plan')
    .description("Set a tenant's plan, as PUT /tenants/{id}/billing does (the plan must include the tenant's tier)")
    .argument('<slug>', 'the tenant', parseSlug)
    .argument('<plan>', 'a plan key (see `plans list`)', parsePlan)
    .option('--reason <text>', 'recorded in the audit logs (1-500 characters)', parseReason)
    .addHelpText(
      'after',
      `
Going below the tenant's current usage is allowed: the plan's limits then block only new creation.
Both audit logs record it (billing.plan_changed) with the OS user as the operator.

Examples:
  $ npm run cli -- billing set-plan acme pro
  $ npm run cli -- billing set-plan acme enterprise --reason "contract 2026-014"`,
    )
    .action(async (slug: string, plan: string, opts: { reason?: string }) => {
      const { operatorActor } = await import('../lifecycle/actor.js');
      const view = await withBilling(async (b) => b.changePlan(await b.idOf(slug), { plan, reason: opts.reason }, operatorActor()));
      printBilling(view);
      note(`tenant '${view.slug}' is on the ${view.plan.key} plan`);
    });
  return billing;
}

/** plans list */
export function plansCommand(): Command {
  const plans = new Command('plans').description('The plan catalogue (control.plans and control.plan_features)');
  plans
    .command('list')
    .description('Table of plans, cheapest first, with their limits and the tiers they include')
    .addHelpText('after', '\nExamples:\n  $ npm run cli -- plans list')
    .action(async () => {
      const catalogue = await withBilling((b) => b.catalogue());
      printPlans(catalogue);
      note(`${catalogue.length} plan${catalogue.length === 1 ? '' : 's'}; limits: unlimited where the plan sets none`);
    });
  return plans;
}
