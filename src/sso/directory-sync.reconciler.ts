import { Inject, Injectable } from '@nestjs/common';
import type { WorkOS } from '@workos-inc/node';
import { DirectorySyncProcessor, DrainResult } from './directory-sync.processor.js';
import { DIRECTORY_EVENTS } from './directory-sync.service.js';
import { SsoError } from './sso.errors.js';
import { requireWorkOS, WORKOS } from './workos.client.js';
import { EventStatus, WorkOSEventStore } from './workos-events.store.js';

const PAGE_SIZE = 100;

export interface ReconcilePage {
  page: number;
  fetched: number;
  /** Not stored before (missed by webhooks). */
  stored: number;
  cursor: string;
}

export interface ReconcileReport {
  cursorBefore: string | null;
  cursorAfter: string | null;
  pages: number;
  /** Per event name: fetched, newly stored, and the status of the fetched events after processing. */
  byEvent: Record<string, { fetched: number; stored: number } & Record<EventStatus, number>>;
  drained: DrainResult;
}

/**
 * Catches up with what webhooks missed (an outage, a lost delivery): WorkOS's events API is read
 * page by page from the stored cursor, events are stored as webhook deliveries are (same ids,
 * so nothing is stored or applied twice) and processed, and the cursor advances after each page.
 */
@Injectable()
export class DirectorySyncReconciler {
  constructor(
    @Inject(WORKOS) private readonly workos: WorkOS | null,
    private readonly store: WorkOSEventStore,
    private readonly processor: DirectorySyncProcessor,
  ) {}

  async reconcile(onPage: (page: ReconcilePage) => void = () => undefined): Promise<ReconcileReport> {
    const workos = requireWorkOS(this.workos);
    const cursorBefore = await this.store.cursor();
    const report: ReconcileReport = { cursorBefore, cursorAfter: cursorBefore, pages: 0, byEvent: {}, drained: { processed: 0, ignored: 0, retried: 0, failed: 0 } };
    let after = cursorBefore;
    for (;;) {
      const list = await workos.events
        .listEvents({ events: [...DIRECTORY_EVENTS], limit: PAGE_SIZE, ...(after ? { after } : {}) })
        .catch((err: unknown) => {
          throw new SsoError('SSO_PROVIDER_ERROR', `WorkOS's events API failed: ${(err as Error).message}`, undefined, { 'retry-after': '30' });
        });
      if (!list.data.length) break;
      const stored = await this.store.store(list.data, 'reconcile');
      const drained = await this.processor.drain();
      for (const k of Object.keys(drained) as Array<keyof DrainResult>) report.drained[k] += drained[k];
      const statuses = await this.store.statusOf(list.data.map((e) => e.id));
      for (const e of list.data) {
        const row = (report.byEvent[e.event] ??= { fetched: 0, stored: 0, pending: 0, processed: 0, ignored: 0, failed: 0 });
        row.fetched++;
        if (stored.has(e.id)) row.stored++;
        const status = statuses.get(e.id)?.status;
        if (status) row[status]++;
      }
      after = list.data[list.data.length - 1].id;
      await this.store.saveCursor(after);
      report.pages++;
      report.cursorAfter = after;
      onPage({ page: report.pages, fetched: list.data.length, stored: stored.size, cursor: after });
      if (!list.listMetadata?.after || list.data.length < PAGE_SIZE) break;
    }
    return report;
  }

  retryFailed(): Promise<number> {
    return this.store.retryFailed();
  }
}
