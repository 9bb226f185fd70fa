import type { EmbeddedCluster } from '../libs/postgres/index.js';

export default async function globalTeardown(): Promise<void> {
  const clusters = (globalThis as { __tenancyClusters?: EmbeddedCluster[] }).__tenancyClusters ?? [];
  await Promise.all(clusters.map((c) => c.stop()));
}
