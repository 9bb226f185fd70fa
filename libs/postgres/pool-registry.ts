export class PoolCapacityError extends Error {
  constructor(readonly key: string, readonly waitedMs: number) {
    super(`no connection budget for pool ${key} after ${waitedMs} ms: every open pool is busy`);
    this.name = 'PoolCapacityError';
  }
}

export interface PoolFactory<P> {
  open(key: string): Promise<P>;
  close(pool: P): Promise<void>;
}

interface Entry<P> {
  key: string;
  size: number;
  pinned: boolean;
  active: number;
  pool?: P;
  opening?: Promise<P>;
}

export interface PoolLease<P> {
  pool: P;
  release(): void;
}

export interface PoolRegistryOptions {
  /** Most connections all pools together may hold (sum of pool sizes). */
  maxConnections: number;
  /** How long a lease waits for budget before failing. */
  waitTimeoutMs: number;
}

/**
 * A bounded registry of connection pools keyed by placement. Each open pool reserves its size
 * from a global connection budget; when a new pool needs room, the least recently used pools
 * with no lease out are closed first. Pinned pools are never closed.
 */
export class PoolRegistry<P> {
  private readonly entries = new Map<string, Entry<P>>(); // insertion order = LRU order
  private reserved = 0;
  private waiters: Array<() => void> = [];
  private closed = false;

  constructor(
    private readonly factory: PoolFactory<P>,
    private readonly options: PoolRegistryOptions,
  ) {}

  async lease(key: string, size: number, pinned = false): Promise<PoolLease<P>> {
    const entry = await this.entryFor(key, size, pinned);
    entry.active++;
    const pool = entry.pool ?? (await entry.opening!.catch((err) => {
      entry.active--;
      throw err;
    }));
    let released = false;
    return {
      pool,
      release: () => {
        if (released) return;
        released = true;
        entry.active--;
        if (entry.active === 0) this.wake();
      },
    };
  }

  stats(): { pools: number; reservedConnections: number; maxConnections: number; keys: string[] } {
    return {
      pools: this.entries.size,
      reservedConnections: this.reserved,
      maxConnections: this.options.maxConnections,
      keys: [...this.entries.keys()],
    };
  }

  /** Open pools, for readiness checks and metrics. */
  openPools(): Array<{ key: string; pool: P }> {
    return [...this.entries.values()].filter((e) => e.pool).map((e) => ({ key: e.key, pool: e.pool! }));
  }

  async closeAll(): Promise<void> {
    this.closed = true;
    const all = [...this.entries.values()];
    this.entries.clear();
    this.reserved = 0;
    this.wake();
    await Promise.all(all.map(async (e) => this.factory.close(e.pool ?? (await e.opening!)).catch(() => undefined)));
  }

  /** Closes one pool (for example after its tenant moved away); waits for nothing. */
  async evict(key: string): Promise<void> {
    const e = this.entries.get(key);
    if (!e || e.active > 0) return;
    this.drop(e);
    await this.factory.close(e.pool ?? (await e.opening!)).catch(() => undefined);
  }

  private async entryFor(key: string, size: number, pinned: boolean): Promise<Entry<P>> {
    if (this.closed) throw new Error('pool registry is closed');
    const found = this.entries.get(key);
    if (found) {
      this.entries.delete(key);
      this.entries.set(key, found);
      return found;
    }
    if (size > this.options.maxConnections) {
      throw new Error(`pool ${key} wants ${size} connections, more than the cap of ${this.options.maxConnections}`);
    }
    const started = Date.now();
    while (!this.makeRoom(size)) {
      const left = this.options.waitTimeoutMs - (Date.now() - started);
      if (left <= 0) throw new PoolCapacityError(key, Date.now() - started);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
      const raced = this.entries.get(key);
      if (raced) return raced;
    }
    const entry: Entry<P> = { key, size, pinned, active: 0 };
    entry.opening = this.factory.open(key).then(
      (pool) => {
        entry.pool = pool;
        entry.opening = undefined;
        return pool;
      },
      (err) => {
        this.drop(entry);
        throw err;
      },
    );
    this.reserved += size;
    this.entries.set(key, entry);
    return entry;
  }

  private makeRoom(size: number): boolean {
    if (this.reserved + size <= this.options.maxConnections) return true;
    for (const e of this.entries.values()) {
      if (this.reserved + size <= this.options.maxConnections) break;
      if (e.pinned || e.active > 0 || !e.pool) continue;
      this.drop(e);
      void this.factory.close(e.pool).catch(() => undefined);
    }
    return this.reserved + size <= this.options.maxConnections;
  }

  private drop(e: Entry<P>): void {
    if (this.entries.get(e.key) === e) {
      this.entries.delete(e.key);
      this.reserved -= e.size;
    }
  }

  private wake(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }
}
