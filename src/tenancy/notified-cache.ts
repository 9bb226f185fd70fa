/**
 * An in-memory cache kept true by NOTIFY (through RoutingTable's listener): a hit is answered
 * synchronously; a miss is loaded, and kept only if nothing was forgotten meanwhile (a change
 * announced while loading wins over what was loaded) and the listener is up (while it is down,
 * a missed announcement could leave a stale entry, so nothing is kept). Entries also expire after
 * `ttlMs`, a safety net; past `maxEntries` the cache starts afresh.
 */
export class NotifiedCache<V> {
  private readonly entries = new Map<string, { value: V; at: number }>();
  private generation = 0;

  constructor(
    private readonly load: (key: string) => Promise<V>,
    private readonly options: { ttlMs: number; isListening: () => boolean; maxEntries?: number },
  ) {}

  get(key: string): V | Promise<V> {
    const hit = this.entries.get(key);
    const now = Date.now();
    if (hit && now - hit.at < this.options.ttlMs) return hit.value;
    const generation = this.generation;
    return this.load(key).then((value) => {
      if (this.options.isListening() && generation === this.generation) {
        if (this.entries.size >= (this.options.maxEntries ?? 100_000)) this.entries.clear();
        this.entries.set(key, { value, at: now });
      }
      return value;
    });
  }

  forget(key: string): void {
    this.generation++;
    this.entries.delete(key);
  }

  clear(): void {
    this.generation++;
    this.entries.clear();
  }
}
