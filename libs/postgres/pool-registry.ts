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
 * A bounded registry of connection pools keyed by placement. Each open pool reserves connections
 * from a global budget: a fixed size, or a small start that grows (grow/shrink) as its load
 * needs. When room is needed, the least recently used pools with no lease out are closed
 * first. Pinned pools are never closed.
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
    // entryFor counts the lease before it returns, so no other lease can close this pool meanwhile.
    const entry = await this.entryFor(key, size, pinned);
    let pool: P;
    try {
      pool = entry.pool ?? (await entry.opening!);
    } catch (err) {
      this.releaseOne(entry);
      throw err;
    }
    return this.leaseOf(entry, pool);
  }

  /** A lease on a pool that is open already, without waiting: undefined when it is not open. */
  leaseOpen(key: string): PoolLease<P> | undefined {
    const e = this.entries.get(key);
    if (!e?.pool || this.closed) return undefined;
    this.entries.delete(key);
    this.entries.set(key, e);
    e.active++;
    return this.leaseOf(e, e.pool);
  }

  private leaseOf(entry: Entry<P>, pool: P): PoolLease<P> {
    let released = false;
    return {
      pool,
      release: () => {
        if (released) return;
        released = true;
        this.releaseOne(entry);
      },
    };
  }

  private releaseOne(entry: Entry<P>): void {
    entry.active--;
    if (entry.active === 0) this.wake();
  }

  stats(): { pools: number; reservedConnections: number; maxConnections: number; waiting: number; keys: string[] } {
    return {
      pools: this.entries.size,
      waiting: this.waiters.length,
      reservedConnections: this.reserved,
      maxConnections: this.options.maxConnections,
      keys: [...this.entries.keys()],
    };
  }

  async closeAll(): Promise<void> {
    this.closed = true;
    const all = [...this.entries.values()];
    this.entries.clear();
    this.reserved = 0;
    this.wake();
    await Promise.all(all.map((e) => this.closeEntry(e)));
  }

  private async closeEntry(e: Entry<P>): Promise<void> {
    try {
      await this.factory.close(e.pool ?? (await e.opening!));
    } catch {
      // a pool that never opened, or failed to close, has nothing left to release
    }
  }

  /**
   * Reserves one more connection for an open pool, closing least recently used idle pools if
   * the cap needs it. False when the cap leaves no room: the pool then serves from what it has.
   */
  grow(key: string, pool: P): boolean {
    const e = this.entries.get(key);
    if (!e || e.pool !== pool || !this.makeRoom(1)) return false;
    e.size++;
    this.reserved++;
    return true;
  }

  /** Gives back one connection of a pool that closed one (never below one per pool). */
  shrink(key: string, pool: P): void {
    const e = this.entries.get(key);
    if (!e || e.pool !== pool || e.size <= 1) return;
    e.size--;
    this.reserved--;
    this.wake();
  }

  /** Closes one pool (for example after its tenant moved away); waits for nothing. */
  async evict(key: string): Promise<void> {
    const e = this.entries.get(key);
    if (!e || e.active > 0) return;
    this.drop(e);
    await this.closeEntry(e);
  }

  private async entryFor(key: string, size: number, pinned: boolean): Promise<Entry<P>> {
    const started = Date.now();
    for (;;) {
      if (this.closed) throw new Error('pool registry is closed');
      const found = this.entries.get(key);
      if (found) {
        this.entries.delete(key);
        this.entries.set(key, found);
        found.active++;
        return found;
      }
      if (size > this.options.maxConnections) {
        throw new Error(`pool ${key} wants ${size} connections, more than the cap of ${this.options.maxConnections}`);
      }
      if (this.makeRoom(size)) break;
      const left = this.options.waitTimeoutMs - (Date.now() - started);
      if (left <= 0) throw new PoolCapacityError(key, Date.now() - started);
      await new Promise<void>((resolve) => {
        const waiter = () => {
          clearTimeout(t);
          resolve();
        };
        // A lease that gives up takes its waiter along, so waiting under pressure leaks nothing.
        const t = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve();
        }, left);
        this.waiters.push(waiter);
      });
    }
    const entry: Entry<P> = { key, size, pinned, active: 1 };
    entry.opening = this.factory.open(key).then(
      (pool) => {
        entry.pool = pool;
        entry.opening = undefined;
        return pool;
      },
      (err) => {
        this.drop(entry);
        this.wake();
        throw err;
      },
    );
    this.reserved += size;
    this.entries.set(key, entry);
    return entry;
  }

  /** Closes least recently used idle pools until `size` fits; closes none unless that is enough. */
  private makeRoom(size: number): boolean {
    const needed = this.reserved + size - this.options.maxConnections;
    if (needed <= 0) return true;
    const victims: Entry<P>[] = [];
    let freed = 0;
    for (const e of this.entries.values()) {
      if (freed >= needed) break;
      if (e.pinned || e.active > 0 || !e.pool) continue;
      victims.push(e);
      freed += e.size;
    }
    if (freed < needed) return false;
    for (const e of victims) {
      this.drop(e);
      void this.closeEntry(e);
    }
    return true;
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
