import { createHash } from 'node:crypto';
import type { PlatformActorKind } from './platform-audit.js';

export const PURGE_RECEIPT_FORMAT = 'tenant-purge-receipt/v1';

/** One table of a purged placement, in the order its rows were removed (children first). */
export interface PurgedTable {
  name: string;
  rowsRemoved: number;
  /** Recount after the removal: 0, or the purge is abandoned before it writes a receipt. */
  rowsRemaining: number;
}

/** One place the tenant's data lived: its placement, or the source a move left behind. */
export interface PurgedPlacement {
  role: 'current' | 'move_source';
  moveId: string | null;
  tier: string;
  server: string;
  database: string;
  schema: string;
  /** The schema or database existed when the purge ran (false: an earlier attempt had removed it). */
  found: boolean;
  tables: PurgedTable[];
  /** 'schema' or 'database' when the tenant's own one was dropped; null on the shared tier. */
  dropped: 'schema' | 'database' | null;
  /** Checked after the removal: the tenant's rows are 0 and its own schema or database no longer exists. */
  gone: boolean;
}

/**
 * What a purge removed, kept in the platform audit log after the tenant is gone. Only values JSON
 * and jsonb agree on (strings, integers, booleans, null), so its canonical form survives storage.
 */
export interface PurgeReceipt {
  format: typeof PURGE_RECEIPT_FORMAT;
  tenant: { id: string; slug: string; name: string; tier: string; server: string; database: string; schema: string };
  deletionRequestedAt: string;
  purgeAfter: string;
  purgedAt: string;
  purgedBy: { kind: PlatformActorKind; id: string | null };
  placements: PurgedPlacement[];
  rowsRemoved: number;
  membershipsRemoved: number;
  verification: {
    rowsRemaining: number;
    /** Own schemas or databases of the tenant that still exist. */
    objectsRemaining: number;
    membershipsRemaining: number;
    tenantRowsRemaining: number;
    nothingLeft: boolean;
  };
  /** Earlier attempts of this purge that stopped half way (a crash): when, and the rows they found. */
  earlierAttempts: Array<{ startedAt: string; rowsFound: number }>;
}

/**
 * JSON with object keys sorted (by UTF-16 code units, as Array.prototype.sort does) at every
 * level, arrays in order, no white space: the same bytes for the same receipt on every machine.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new Error('canonical JSON has no form for a non-finite number');
    if (value === undefined || typeof value === 'function' || typeof value === 'symbol' || typeof value === 'bigint') {
      throw new Error(`canonical JSON has no form for ${typeof value}`);
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

/** Hex SHA-256 of the receipt's canonical JSON (UTF-8): recompute it to check a receipt was not altered. */
export function receiptDigest(receipt: unknown): string {
  return createHash('sha256').update(canonicalJson(receipt), 'utf8').digest('hex');
}
