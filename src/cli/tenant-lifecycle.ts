import { NestFactory } from '@nestjs/core';
import type cliProgress from 'cli-progress';
import { AppModule } from '../app.module.js';
import { operatorActor } from '../lifecycle/actor.js';
import { LifecycleService } from '../lifecycle/lifecycle.service.js';
import type { DueSweep, StoredReceipt } from '../lifecycle/tenant-purge.js';
import type { TenantRoute } from '../tenancy/tenant-route.js';
import { TenancyError } from '../tenancy/tenancy.errors.js';
import { CliFailure } from './cli.errors.js';
import { formatTime, note, printTable, progressBar, result } from './output.js';
import { loadCliConfig, withJwtSecret, withPreparedDatabases } from './session.js';

// Loaded only by the lifecycle commands: they run the API's own LifecycleService in an application context.

export type LifecycleChange = 'suspend' | 'reactivate' | 'delete' | 'restore';

/** The app's LifecycleService, after the app's own start-up steps; no HTTP and no sweeper. */
async function withLifecycle<T>(fn: (lifecycle: LifecycleService) => Promise<T>): Promise<T> {
  const config = withJwtSecret(loadCliConfig());
  // The command does its one thing; background sweeps are the app's job.
  config.lifecycle.sweepIntervalMs = 0;
  return withPreparedDatabases(config, async (runtime) => {
    const app = await NestFactory.createApplicationContext(AppModule.forRoot(config, runtime), { logger: false, abortOnError: false });
    try {
      return await fn(app.get(LifecycleService));
    } finally {
      await app.close();
    }
  });
}

async function idOf(lifecycle: LifecycleService, slug: string): Promise<string> {
  const id = await lifecycle.idOf(slug);
  if (!id) throw new TenancyError('TENANT_NOT_FOUND', `tenant '${slug}' was not found`, 'slug');
  return id;
}

export function printTenant(t: TenantRoute): void {
  printTable(
    ['slug', 'id', 'tier', 'server', 'status', 'reason', 'purge after'],
    [[t.slug, t.id, t.placement.tier, t.placement.serverKey, t.status, t.statusReason ?? '', t.purgeAfter ? formatTime(t.purgeAfter) : '']],
  );
}

/** Suspend, reactivate, schedule the deletion of, or restore the tenant of a slug, as the OS user. */
export function changeTenant(slug: string, change: LifecycleChange, reason?: string): Promise<TenantRoute> {
  const actor = operatorActor();
  return withLifecycle(async (lifecycle) => {
    const id = await idOf(lifecycle, slug);
    switch (change) {
      case 'suspend':
        return lifecycle.suspend(id, reason!, actor);
      case 'reactivate':
        return lifecycle.reactivate(id, actor);
      case 'delete':
        return lifecycle.scheduleDeletion(id, actor);
      case 'restore':
        return lifecycle.restore(id, actor);
    }
  });
}

export function purgeTenant(slug: string): Promise<StoredReceipt> {
  const actor = operatorActor();
  return withLifecycle(async (lifecycle) => lifecycle.purge(await idOf(lifecycle, slug), actor));
}

/** Every due tenant, with a progress bar on stderr. */
export function purgeDueTenants(): Promise<DueSweep> {
  const actor = operatorActor();
  return withLifecycle(async (lifecycle) => {
    let bar: cliProgress.SingleBar | undefined;
    try {
      return await lifecycle.purgeDue(actor, (done, total, slug) => {
        if (done === 0) {
          if (total === 0) return;
          bar = progressBar('purging due tenants [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted} | {slug}');
          bar.start(total, 0, { slug: '' });
          return;
        }
        bar?.update(done, { slug });
      });
    } finally {
      bar?.stop();
    }
  });
}

const asRecorded = (s: StoredReceipt) => ({ auditEntryId: s.auditEntryId, receipt: s.receipt, sha256: s.sha256 });

/** A receipt as a table of what was removed where, then its digest; --json prints it exactly as recorded. */
export function printReceipt(stored: StoredReceipt, json: boolean): void {
  if (json) {
    result(JSON.stringify(asRecorded(stored), null, 2));
    return;
  }
  const r = stored.receipt;
  const rows: Array<Array<string | number>> = [];
  for (const p of r.placements) {
    const where = `${p.role === 'current' ? '' : 'move source: '}${p.tier} on ${p.server}`;
    for (const t of p.tables) rows.push([where, t.name, t.rowsRemoved, t.rowsRemaining]);
    if (p.dropped) rows.push([where, `(${p.dropped} dropped)`, '', '']);
    if (!p.found) rows.push([where, '(already removed by an earlier attempt)', '', '']);
  }
  rows.push(['control plane', 'memberships', r.membershipsRemoved, r.verification.membershipsRemaining]);
  rows.push(['control plane', 'tenant row', 1, r.verification.tenantRowsRemaining]);
  printTable(['where', 'what', 'removed', 'left'], rows);
  result(`tenant ${r.tenant.slug} (${r.tenant.id}) purged at ${r.purgedAt}; nothing left: ${r.verification.nothingLeft ? 'yes' : 'NO'}`);
  result(`receipt sha256 ${stored.sha256} (audit entry ${stored.auditEntryId})`);
}

export function printSweep(sweep: DueSweep, json: boolean): void {
  if (json) {
    result(JSON.stringify(sweep.purged.map(asRecorded), null, 2));
  } else if (sweep.purged.length) {
    printTable(
      ['slug', 'id', 'tier', 'rows removed', 'receipt sha256'],
      sweep.purged.map((s) => [s.receipt.tenant.slug, s.tenantId, s.receipt.tenant.tier, s.receipt.rowsRemoved, s.sha256]),
    );
  }
  note(`${sweep.purged.length} purged, ${sweep.skipped} being purged by another process, ${sweep.failed.length} failed`);
  if (sweep.failed.length) {
    throw new CliFailure(`could not purge: ${sweep.failed.map((f) => `'${f.slug}' (${f.error})`).join('; ')}; they stay due and are retried`);
  }
}
