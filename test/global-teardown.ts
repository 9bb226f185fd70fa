import { StartedHarness, stopHarness } from '../libs/testing/index.js';

/** Stops the run's PostgreSQL servers and removes their data folder. */
export default async function globalTeardown(): Promise<void> {
  const harness = (globalThis as { __tenancyHarness?: StartedHarness }).__tenancyHarness;
  if (harness) await stopHarness(harness);
}
