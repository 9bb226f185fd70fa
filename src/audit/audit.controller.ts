import { Controller, Get, Header, Query, Res } from '@nestjs/common';
import { ApiBadRequestResponse, ApiOkResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { TenantConnectionProvider } from '../tenancy/tenant-connection.provider.js';
import { TenantContextStore } from '../tenancy/tenant-context.js';
import { AllowRoles, TenantScoped } from '../tenancy/tenant-scoped.decorator.js';
import { AuditRecord, listAudit, verifyChain } from './audit-log.js';
import { AuditCheckpoints } from './audit-checkpoints.service.js';
import { AuditSealer } from './audit-sealer.service.js';
import { AuditEntryDto, AuditExportQueryDto, AuditPageDto, AuditQueryDto, AuditVerificationDto } from './dto/audit.dto.js';

/** Most entries one export returns; narrow the filters (time range) for more. */
export const AUDIT_EXPORT_MAX = 50_000;
const EXPORT_PAGE = 1_000;

const CSV_COLUMNS = ['seq', 'id', 'createdAt', 'actorKind', 'actorId', 'action', 'targetType', 'targetId', 'requestId', 'ip', 'userAgent', 'metadata', 'hash'] as const;

function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? '' : v instanceof Date ? v.toISOString() : typeof v === 'object' ? JSON.stringify(v) : String(v);
  // Quoted always; a leading =, +, - or @ is defused so a spreadsheet never runs it as a formula.
  return `"${(/^[=+\-@]/.test(s) ? `'${s}` : s).replaceAll('"', '""')}"`;
}

/** The tenant's audit log: who did what, for owners and admins, and proof that it was not changed. */
@ApiTags('audit')
@ApiBadRequestResponse({ type: ErrorBodyDto })
@TenantScoped()
@AllowRoles('owner', 'admin')
@Controller('orgs/:slug/audit')
export class AuditController {
  constructor(
    private readonly tenant: TenantConnectionProvider,
    private readonly checkpoints: AuditCheckpoints,
    private readonly sealer: AuditSealer,
    private readonly store: TenantContextStore,
  ) {}

  /** Seals what was written a moment ago, so that what is read is on the chain. */
  private async seal(): Promise<void> {
    const { route } = this.store.require().access;
    await this.sealer.sealNow(route.id, route.placement);
  }

  private query(q: AuditQueryDto, beforeSeq?: number, limit = q.limit) {
    return { actorId: q.actor, actorKind: q.actorKind, action: q.action, targetType: q.targetType, targetId: q.targetId, from: q.from, to: q.to, beforeSeq, limit };
  }

  @Get()
  @AllowRoles('owner', 'admin')
  @ApiOperation({ summary: 'Audit entries, newest first; filter by actor, action, target and time; keyset pagination' })
  @ApiOkResponse({ type: AuditPageDto })
  async list(@Query() q: AuditQueryDto): Promise<AuditPageDto> {
    await this.seal();
    const items = await listAudit(this.tenant.manager, this.query(q, q.cursor ? Number(q.cursor) : undefined));
    const last = items[items.length - 1];
    return { items: items.map(AuditEntryDto.from), nextCursor: items.length === q.limit && last.seq !== null ? String(last.seq) : null };
  }

  @Get('export')
  @AllowRoles('owner', 'admin')
  @ApiOperation({ summary: `The filtered entries as NDJSON or CSV, newest first (at most ${AUDIT_EXPORT_MAX}; X-Audit-Truncated says when there were more)` })
  @ApiProduces('application/x-ndjson', 'text/csv')
  @ApiOkResponse({ description: 'One entry per line' })
  async export(@Query() q: AuditExportQueryDto, @Res({ passthrough: true }) reply: FastifyReply): Promise<string> {
    await this.seal();
    const lines: string[] = q.format === 'csv' ? [CSV_COLUMNS.join(',')] : [];
    let before: number | undefined;
    let count = 0;
    let more = false;
    for (;;) {
      const page: AuditRecord[] = await listAudit(this.tenant.manager, this.query(q, before, EXPORT_PAGE));
      for (const r of page) {
        if (count === AUDIT_EXPORT_MAX) {
          more = true;
          break;
        }
        lines.push(q.format === 'csv' ? CSV_COLUMNS.map((c) => csvCell(r[c])).join(',') : JSON.stringify(AuditEntryDto.from(r)));
        count++;
      }
      if (more || page.length < EXPORT_PAGE || page[page.length - 1].seq === null) break;
      before = page[page.length - 1].seq!;
    }
    reply.header('content-type', q.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson');
    reply.header('content-disposition', `attachment; filename="${this.tenant.tenant.slug}-audit.${q.format}"`);
    reply.header('x-audit-truncated', String(more));
    return lines.length ? `${lines.join('\n')}\n` : '';
  }

  @Get('verify')
  @AllowRoles('owner', 'admin')
  @Header('cache-control', 'no-store')
  @ApiOperation({
    summary: "Recomputes the tenant's hash chain: ok, or the first entry where it breaks (edited, removed, swapped, or a tail cut off after a checkpoint)",
  })
  @ApiOkResponse({ type: AuditVerificationDto })
  async verify(): Promise<AuditVerificationDto> {
    const tenantId = this.tenant.tenant.id;
    await this.seal();
    const checkpoint = await this.checkpoints.latest(tenantId);
    let result = await verifyChain(this.tenant.manager, checkpoint);
    // Entries still without a place right after sealing: either written meanwhile (queued), or
    // left unqueued by an app instance older than tenant migration 0004; the latter are queued
    // and sealed now. Only onto a chain that verified: entries whose places were cut off the
    // chain are evidence, and sealing them again would write over it.
    if (result.ok && result.pending > 0) {
      const { route } = this.store.require().access;
      if ((await this.sealer.requeueUnsealed(route.id, route.placement)) > 0) {
        await this.seal();
        result = await verifyChain(this.tenant.manager, checkpoint);
      }
    }
    if (result.ok && result.head && (!checkpoint || checkpoint.seq !== result.head.seq)) await this.checkpoints.record(tenantId, result.head, 'audit-verify');
    return AuditVerificationDto.from(result, checkpoint);
  }
}
