import { Inject, Injectable, Logger } from '@nestjs/common';
import { quoteIdent } from '../../libs/postgres/index.js';
import { v7 as uuidv7 } from 'uuid';
import { CONTROL_SCHEMA, DATABASE_RUNTIME, DatabaseRuntime, withOwner } from '../tenancy/placements.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';

export interface ChainHead {
  seq: number;
  hash: string;
}

/**
 * Checkpoints of every tenant's audit chain head in the control plane (control.audit_checkpoints,
 * written by the owner role only): cutting entries off the end of a tenant's log — which a hash chain alone cannot
 * reveal — then shows as a checkpoint beyond the tail. Recorded by every verification and by the
 * sweeper for every tenant whose head moved.
 */
@Injectable()
export class AuditCheckpoints {
  private readonly logger = new Logger(AuditCheckpoints.name);

  constructor(
    private readonly pools: TenantPools,
    @Inject(DATABASE_RUNTIME) private readonly runtime: DatabaseRuntime,
  ) {}

  async latest(tenantId: string): Promise<ChainHead | null> {
    const rows = await this.pools.control().query<Array<{ seq: string; hash: string }>>(
      'SELECT seq, hash FROM control.audit_checkpoints WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT 1',
      [tenantId],
    );
    return rows.length ? { seq: Number(rows[0].seq), hash: rows[0].hash } : null;
  }

  /** Written as the owner role: the app role may read checkpoints, never write one. */
  async record(tenantId: string, head: ChainHead, source = 'audit-checkpointer'): Promise<void> {
    const p = this.runtime.primary;
    await withOwner(p, p.database, (c) =>
      c.query(`INSERT INTO ${CONTROL_SCHEMA}.audit_checkpoints (id, tenant_id, seq, hash, source) VALUES ($1, $2, $3, $4, $5)`, [
        uuidv7(),
        tenantId,
        head.seq,
        head.hash,
        source,
      ]),
    );
  }

  /** Every tenant whose chain head moved since its last checkpoint gets a new one. Returns how many. */
  async checkpointAll(): Promise<number> {
    const p = this.runtime.primary;
    const tenants = await withOwner(p, p.database, async (c) =>
      (
        await c.query<{ id: string; tier: string; server_key: string; database_name: string; schema_name: string; seq: string | null }>(
          `SELECT t.id, t.tier, t.server_key, t.database_name, t.schema_name, c.seq
             FROM ${CONTROL_SCHEMA}.tenants t
             LEFT JOIN LATERAL (SELECT seq FROM ${CONTROL_SCHEMA}.audit_checkpoints
                                 WHERE tenant_id = t.id ORDER BY at DESC, id DESC LIMIT 1) c ON true
            WHERE t.status IN ('active', 'suspended', 'pending_deletion')`,
        )
      ).rows,
    );
    // One connection per database; within it, every schema that holds tenant chains.
    const byDatabase = new Map<string, typeof tenants>();
    for (const t of tenants) {
      const key = `${t.server_key}/${t.database_name}`;
      byDatabase.set(key, [...(byDatabase.get(key) ?? []), t]);
    }
    let recorded = 0;
    for (const [key, group] of byDatabase) {
      const [serverKey, database] = key.split('/');
      const server = this.runtime.servers.get(serverKey);
      if (!server) continue;
      try {
        const heads = await withOwner(server, database, async (c) => {
          const found = new Map<string, ChainHead>();
          for (const schema of new Set(group.map((t) => t.schema_name))) {
            const exists = await c.query(`SELECT to_regclass($1) AS t`, [`${quoteIdent(schema)}.audit_chain_heads`]);
            if (!exists.rows[0].t) continue;
            // Entries a crash left unsealed are sealed first: a checkpoint covers what was written.
            for (const t of group.filter((g) => g.schema_name === schema)) {
              // In maintenance (the platform's own tool); a tenant under a move's freeze is sealed next time.
              await c.query(`BEGIN; SET LOCAL app.audit_maintenance = 'on'`);
              await c.query(`SELECT ${quoteIdent(schema)}.audit_seal($1)`, [t.id]).then(
                () => c.query('COMMIT'),
                () => c.query('ROLLBACK'),
              );
            }
          }
          await c.query('BEGIN READ ONLY');
          await c.query(`SET LOCAL app.audit_maintenance = 'on'`);
          for (const schema of new Set(group.map((t) => t.schema_name))) {
            const exists = await c.query(`SELECT to_regclass($1) AS t`, [`${quoteIdent(schema)}.audit_chain_heads`]);
            if (!exists.rows[0].t) continue;
            const { rows } = await c.query<{ organization_id: string; seq: string; hash: string }>(
              `SELECT organization_id, seq, encode(hash, 'hex') AS hash FROM ${quoteIdent(schema)}.audit_chain_heads`,
            );
            for (const r of rows) found.set(r.organization_id, { seq: Number(r.seq), hash: r.hash });
          }
          await c.query('COMMIT');
          return found;
        });
        for (const t of group) {
          const head = heads.get(t.id);
          if (head && head.seq > 0 && head.seq !== Number(t.seq ?? 0)) {
            await this.record(t.id, head);
            recorded++;
          }
        }
      } catch (err) {
        this.logger.warn({ database: key, reason: (err as Error).message }, 'audit checkpoints skipped for a database; retried at the next sweep');
      }
    }
    return recorded;
  }
}
