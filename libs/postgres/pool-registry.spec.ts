import { describe, expect, it } from '@jest/globals';
import { PoolCapacityError, PoolFactory, PoolRegistry } from './pool-registry.js';

/** Pure logic: a fake factory stands in for PostgreSQL and records what it was asked to do. */

interface FakePool {
  key: string;
  serial: number;
  closed: boolean;
}

class FakeFactory implements PoolFactory<FakePool> {
  readonly opened: string[] = [];
  readonly closed: string[] = [];
  private serial = 0;
  private readonly gates = new Map<string, Promise<void>>();
  private readonly failures = new Map<string, Error>();

  /** Opens of key wait until the returned function is called; called with an error, they fail with it. */
  hold(key: string): (err?: Error) => void {
    let open!: () => void;
    this.gates.set(key, new Promise<void>((resolve) => (open = resolve)));
    return (err?: Error) => {
      if (err) this.failures.set(key, err);
      this.gates.delete(key);
      open();
    };
  }

  /** The next open of key fails. */
  failNextOpen(key: string, err = new Error(`cannot connect for ${key}`)): void {
    this.failures.set(key, err);
  }

  async open(key: string): Promise<FakePool> {
    this.opened.push(key);
    const gate = this.gates.get(key);
    if (gate) await gate;
    const failure = this.failures.get(key);
    if (failure) {
      this.failures.delete(key);
      throw failure;
    }
    return { key, serial: ++this.serial, closed: false };
  }

  async close(pool: FakePool): Promise<void> {
    pool.closed = true;
    this.closed.push(pool.key);
  }
}

function setup(maxConnections: number, waitTimeoutMs = 1_000) {
  const factory = new FakeFactory();
  return { factory, registry: new PoolRegistry(factory, { maxConnections, waitTimeoutMs }) };
}

/** Lets every pending promise callback run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function isPending(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await settle();
  return !done;
}

/** Opens each key (size 1) and releases it at once, in order: the last one is the most recently used. */
async function openIdle(registry: PoolRegistry<FakePool>, ...keys: string[]): Promise<void> {
  for (const key of keys) (await registry.lease(key, 1)).release();
}

describe('PoolRegistry', () => {
  it('hands out the same pool for a key and opens it once', async () => {
    const { factory, registry } = setup(10);
    const first = await registry.lease('a', 3);
    first.release();
    const second = await registry.lease('a', 3);
    expect(second.pool).toBe(first.pool);
    const other = await registry.lease('b', 3);
    expect(other.pool).not.toBe(first.pool);
    expect(factory.opened).toEqual(['a', 'b']);
    expect(registry.stats()).toMatchObject({ pools: 2, reservedConnections: 6, keys: ['a', 'b'] });
  });

  it('opens a key once when many leases for it arrive while it is opening', async () => {
    const { factory, registry } = setup(10);
    const open = factory.hold('a');
    const leases = Array.from({ length: 5 }, () => registry.lease('a', 4));
    await settle();
    expect(factory.opened).toEqual(['a']);
    open();
    const pools = (await Promise.all(leases)).map((l) => l.pool);
    expect(new Set(pools).size).toBe(1);
    expect(factory.opened).toEqual(['a']);
    // One reservation per pool, not per lease.
    expect(registry.stats().reservedConnections).toBe(4);
  });

  it('closes the least recently used idle pools first, and only as many as it needs', async () => {
    const { factory, registry } = setup(3);
    await openIdle(registry, 'a', 'b', 'c');
    await openIdle(registry, 'a'); // used again: b is now the least recent
    await openIdle(registry, 'd');
    expect(factory.closed).toEqual(['b']);
    await openIdle(registry, 'e');
    expect(factory.closed).toEqual(['b', 'c']);
    expect(registry.stats()).toMatchObject({ keys: ['a', 'd', 'e'], reservedConnections: 3 });

    const wide = setup(4);
    await openIdle(wide.registry, 'a', 'b');
    (await wide.registry.lease('c', 2)).release();
    (await wide.registry.lease('d', 2)).release(); // needs 2: a and b go, c stays
    expect(wide.factory.closed).toEqual(['a', 'b']);
    expect(wide.registry.stats()).toMatchObject({ keys: ['c', 'd'], reservedConnections: 4 });
  });

  it('never closes a pool with a lease out, however long unused', async () => {
    const { factory, registry } = setup(2, 50);
    const held = await registry.lease('a', 1);
    await openIdle(registry, 'b');
    const c = await registry.lease('c', 1);
    expect(factory.closed).toEqual(['b']);
    await expect(registry.lease('d', 1)).rejects.toBeInstanceOf(PoolCapacityError);
    expect(registry.stats().waiting).toBe(0);
    expect(factory.closed).toEqual(['b']);
    expect(held.pool.closed).toBe(false);
    expect(c.pool.closed).toBe(false);
  });

  it('counts a lease released twice only once', async () => {
    const { factory, registry } = setup(2, 50);
    const first = await registry.lease('a', 1);
    const second = await registry.lease('a', 1);
    first.release();
    first.release();
    await openIdle(registry, 'b');
    // a still has a lease out, so room for c may only come from b.
    (await registry.lease('c', 1)).release();
    expect(factory.closed).toEqual(['b']);
    await openIdle(registry, 'c');
    await expect(registry.lease('d', 2)).rejects.toBeInstanceOf(PoolCapacityError);
    expect(second.pool.closed).toBe(false);
  });

  it('never closes a pinned pool, even when it is the least recently used', async () => {
    const { factory, registry } = setup(2, 50);
    const pinned = await registry.lease('control', 1, true);
    pinned.release();
    await openIdle(registry, 'b', 'c', 'd');
    expect(factory.closed).toEqual(['b', 'c']);
    const d = await registry.lease('d', 1);
    await expect(registry.lease('e', 1)).rejects.toBeInstanceOf(PoolCapacityError);
    expect(pinned.pool.closed).toBe(false);
    expect(registry.stats().keys).toEqual(['control', 'd']);
    d.release();
  });

  it('makes a lease wait for budget and lets it through as soon as a lease is released', async () => {
    const { factory, registry } = setup(1, 5_000);
    const a = await registry.lease('a', 1);
    const started = Date.now();
    const b = registry.lease('b', 1);
    expect(await isPending(b)).toBe(true);
    expect(factory.opened).toEqual(['a']);
    setTimeout(() => a.release(), 30);
    const lease = await b;
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(lease.pool.key).toBe('b');
    expect(factory.closed).toEqual(['a']);
    expect(a.pool.closed).toBe(true);
  });

  it('lets a waiting lease share a pool that another lease opened meanwhile', async () => {
    const { factory, registry } = setup(1, 5_000);
    const a = await registry.lease('a', 1);
    const b1 = registry.lease('b', 1);
    const b2 = registry.lease('b', 1);
    await settle();
    a.release();
    const [x, y] = await Promise.all([b1, b2]);
    expect(x.pool).toBe(y.pool);
    expect(factory.opened).toEqual(['a', 'b']);
  });

  it('fails a lease with PoolCapacityError when no budget frees up in time', async () => {
    const { factory, registry } = setup(2, 60);
    const a = await registry.lease('a', 2);
    const started = Date.now();
    const err = await registry.lease('b', 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PoolCapacityError);
    expect(err).toMatchObject({ key: 'b' });
    expect((err as PoolCapacityError).waitedMs).toBeGreaterThanOrEqual(50);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(factory.opened).toEqual(['a']);
    expect(a.pool.closed).toBe(false);
    expect(registry.stats()).toMatchObject({ pools: 1, reservedConnections: 2 });
  });

  it('refuses a pool larger than the whole budget without waiting', async () => {
    const { factory, registry } = setup(5, 10_000);
    const started = Date.now();
    await expect(registry.lease('huge', 6)).rejects.toThrow(/more than the cap of 5/);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(factory.opened).toEqual([]);
  });

  it('gives the budget of a failed open back and opens afresh the next time', async () => {
    const { factory, registry } = setup(1, 50);
    factory.failNextOpen('a', new Error('connection refused'));
    await expect(registry.lease('a', 1)).rejects.toThrow('connection refused');
    expect(registry.stats()).toMatchObject({ pools: 0, reservedConnections: 0, keys: [] });
    const b = await registry.lease('b', 1); // would time out if a still held the budget
    b.release();
    const a = await registry.lease('a', 1); // not a cached failure
    expect(a.pool.key).toBe('a');
    expect(factory.opened).toEqual(['a', 'b', 'a']);
  });

  it('fails every lease waiting on an open that fails, and keeps no trace of it', async () => {
    const { factory, registry } = setup(4);
    const fail = factory.hold('a');
    const leases = [registry.lease('a', 2), registry.lease('a', 2)];
    await settle();
    fail(new Error('no route to host'));
    for (const l of leases) await expect(l).rejects.toThrow('no route to host');
    expect(registry.stats()).toMatchObject({ pools: 0, reservedConnections: 0 });
  });

  it('closeAll closes every pool, busy, idle or pinned, and refuses leases afterwards', async () => {
    const { factory, registry } = setup(10);
    const busy = await registry.lease('busy', 1);
    await openIdle(registry, 'idle');
    (await registry.lease('pinned', 1, true)).release();
    await registry.closeAll();
    expect([...factory.closed].sort()).toEqual(['busy', 'idle', 'pinned']);
    expect(registry.stats()).toMatchObject({ pools: 0, reservedConnections: 0 });
    busy.release(); // a late release does no harm
    await expect(registry.lease('idle', 1)).rejects.toThrow(/closed/);
    expect(factory.opened).toEqual(['busy', 'idle', 'pinned']);
  });

  it('closeAll waits for a pool that is still opening and closes it too', async () => {
    const { factory, registry } = setup(10);
    const open = factory.hold('slow');
    const lease = registry.lease('slow', 1);
    await settle();
    const closing = registry.closeAll();
    expect(await isPending(closing)).toBe(true);
    open();
    await closing;
    await lease.catch(() => undefined);
    expect(factory.closed).toEqual(['slow']);
  });

  it('evict closes an idle pool and leaves one with a lease out', async () => {
    const { factory, registry } = setup(10);
    await openIdle(registry, 'idle');
    const busy = await registry.lease('busy', 1);
    await registry.evict('idle');
    await registry.evict('busy');
    await registry.evict('unknown');
    expect(factory.closed).toEqual(['idle']);
    expect(busy.pool.closed).toBe(false);
    expect(registry.stats()).toMatchObject({ keys: ['busy'], reservedConnections: 1 });
  });

  describe('races and shutdown', () => {
    // A lease for another key in the same tick must not see this entry as idle and close it.
    it('does not close a pool that a lease has just been handed', async () => {
      const { factory, registry } = setup(2, 1_000);
      await openIdle(registry, 'a');
      const other = await registry.lease('x', 1);
      setTimeout(() => other.release(), 20);
      const [a, b] = await Promise.all([registry.lease('a', 1), registry.lease('b', 1)]);
      expect(a.pool.closed).toBe(false);
      expect(b.pool.key).toBe('b');
      expect(factory.closed).toEqual(['x']);
    });

    // A failed open gives its budget back and wakes whoever waits for it.
    it('lets a waiting lease through as soon as a failed open gives its budget back', async () => {
      const { factory, registry } = setup(1, 1_500);
      const fail = factory.hold('a');
      const a = registry.lease('a', 1);
      const b = registry.lease('b', 1);
      await settle();
      fail(new Error('down'));
      await expect(a).rejects.toThrow('down');
      const started = Date.now();
      await b;
      expect(Date.now() - started).toBeLessThan(500);
    });

    // Woken by closeAll, a waiting lease must fail rather than open a pool nobody will close.
    it('closeAll refuses leases that were waiting for budget instead of opening new pools', async () => {
      const { factory, registry } = setup(1, 1_000);
      await registry.lease('a', 1);
      const waiting = registry.lease('b', 1);
      await settle();
      await registry.closeAll();
      await expect(waiting).rejects.toThrow(/closed/);
      expect(factory.opened).toEqual(['a']);
    });

    // One pool failing to open must not make closeAll fail.
    it('closeAll resolves even when a pool that is still opening fails to open', async () => {
      const { factory, registry } = setup(10);
      await openIdle(registry, 'ok');
      const fail = factory.hold('bad');
      const lease = registry.lease('bad', 1);
      lease.catch(() => undefined);
      await settle();
      const closing = registry.closeAll();
      fail(new Error('down'));
      await expect(closing).resolves.toBeUndefined();
      expect(factory.closed).toEqual(['ok']);
    });
  });

  describe('elastic pools', () => {
    it('grows a pool one connection at a time within the cap, and gives connections back', async () => {
      const { registry } = setup(3);
      const a = await registry.lease('a', 1);
      expect(registry.grow('a', a.pool)).toBe(true);
      expect(registry.grow('a', a.pool)).toBe(true);
      expect(registry.stats().reservedConnections).toBe(3);
      expect(registry.grow('a', a.pool)).toBe(false);
      registry.shrink('a', a.pool);
      expect(registry.stats().reservedConnections).toBe(2);
      registry.shrink('a', a.pool);
      registry.shrink('a', a.pool);
      expect(registry.stats().reservedConnections).toBe(1);
    });

    it('closes an idle pool to let a busy one grow, but never a busy one', async () => {
      const { factory, registry } = setup(3);
      await openIdle(registry, 'idle');
      const busy = await registry.lease('busy', 1);
      const other = await registry.lease('other', 1);
      expect(registry.grow('busy', busy.pool)).toBe(true);
      expect(factory.closed).toEqual(['idle']);
      expect(registry.grow('busy', busy.pool)).toBe(false);
      expect(other.pool.closed).toBe(false);
    });

    it('ignores grow and shrink from a pool that is no longer the open one for its key', async () => {
      const { registry } = setup(4);
      const first = await registry.lease('a', 1);
      const stale = first.pool;
      first.release();
      await registry.evict('a');
      const second = await registry.lease('a', 1);
      expect(registry.grow('a', stale)).toBe(false);
      registry.shrink('a', stale);
      expect(registry.grow('a', second.pool)).toBe(true);
      expect(registry.stats().reservedConnections).toBe(2);
    });
  });
});
