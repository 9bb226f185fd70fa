import cliProgress from 'cli-progress';
import Table from 'cli-table3';
import type { PlacementProgress } from '../tenancy/infrastructure.js';

/** Progress and notes go to stderr, so stdout carries only results (safe to pipe). */
export function note(message: string): void {
  process.stderr.write(`${message}\n`);
}

export function result(text: string): void {
  process.stdout.write(`${text}\n`);
}

export function printTable(head: string[], rows: Array<Array<string | number>>): void {
  const table = new Table({ head, style: { head: process.stdout.isTTY ? ['cyan'] : [], border: [] } });
  table.push(...rows);
  result(table.toString());
}

/** 2026-01-31 12:34:56Z: sortable, unambiguous, and short enough for a table. */
export function formatTime(at: Date): string {
  return `${at.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/**
 * The CLI's progress bars: on stderr (stdout carries only results), redrawn in place on a
 * terminal and printed as a line every `everyMs` elsewhere (CI, pipes), where the last line stays
 * as it is (no blank line after it). `etaBuffer` is how many updates the ETA averages over.
 */
export function progressBar(format: string, options: { etaBuffer?: number; everyMs?: number } = {}): cliProgress.SingleBar {
  return new cliProgress.SingleBar({
    stream: process.stderr,
    format,
    noTTYOutput: true,
    clearOnComplete: !process.stderr.isTTY,
    notTTYSchedule: options.everyMs ?? 5_000,
    etaBuffer: options.etaBuffer ?? 10,
  });
}

/**
 * A progress bar (counts and ETA) over the tenant placements, fed by migrateTenantPlacements.
 * On a terminal it redraws in place; elsewhere (CI, pipes) it prints a line now and then.
 */
export class PlacementProgressBar {
  private bar?: cliProgress.SingleBar;
  private seen = 0;

  readonly onProgress: PlacementProgress = (done, total, placementLabel) => {
    this.seen = total;
    if (done === 0) {
      if (total === 0) return;
      this.bar = progressBar('tenant placements [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted} | {placement}', { etaBuffer: 50 });
      this.bar.start(total, 0, { placement: '' });
      return;
    }
    this.bar?.update(done, { placement: placementLabel });
    if (done === total) this.stop();
  };

  /** Placements reported by the last run (schema and dedicated tenants). */
  get total(): number {
    return this.seen;
  }

  /** Idempotent: also called on failure, so the bar's timer never keeps the process alive. */
  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
