import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional, IsString, Matches } from 'class-validator';
import { TIERS, type Tier } from '../../tenancy/tenant-route.js';
import { MOVE_PHASES, type MovePhase, type MoveRecord, type Verification } from '../move-engine.js';
import type { MoveState } from '../moves.service.js';

export class MoveTenantDto {
  @ApiProperty({ enum: TIERS, example: 'dedicated', description: 'The tier to move the tenant to' })
  @IsIn(TIERS, { message: `tier must be one of: ${TIERS.join(', ')}` })
  tier!: Tier;

  @ApiPropertyOptional({ example: 'secondary', description: 'Registered server key (dedicated tier only); default: another server when there is one' })
  @IsOptional()
  @IsString()
  @Matches(/^[a-z][a-z0-9_-]{0,62}$/, { message: 'server must be a registered server key' })
  server?: string;
}

export class MovePlacementDto {
  @ApiProperty({ enum: TIERS })
  tier!: Tier;

  @ApiProperty({ example: 'primary' })
  server!: string;
}

export class MoveTableDto {
  @ApiProperty({ example: 'projects' })
  name!: string;

  @ApiProperty({ description: 'Rows of the tenant in the source when the copy started' })
  rows!: number;

  @ApiProperty({ description: 'Rows copied so far' })
  copied!: number;
}

export class MoveDto {
  @ApiProperty({ format: 'uuid' })
  id!: string;

  @ApiProperty({ format: 'uuid' })
  tenantId!: string;

  @ApiProperty({ enum: MOVE_PHASES, description: 'pending, preparing, copying, catching_up, frozen, verifying, then flipped and cleaned; or aborted / failed' })
  phase!: MovePhase;

  @ApiProperty({
    enum: ['running', 'interrupted', 'awaiting_cleanup', 'finished'],
    description: 'interrupted: no process runs it (it stopped or its process died): the tenant serves from its source; resume or abort it',
  })
  state!: MoveState;

  @ApiProperty({ type: MovePlacementDto })
  source!: MovePlacementDto;

  @ApiProperty({ type: MovePlacementDto })
  target!: MovePlacementDto;

  @ApiProperty()
  rowsTotal!: number;

  @ApiProperty()
  rowsCopied!: number;

  @ApiProperty({ description: 'Copy progress, 0-100' })
  percent!: number;

  @ApiProperty({ type: [MoveTableDto] })
  tables!: MoveTableDto[];

  @ApiProperty({ nullable: true, type: Number, description: 'How long writes were frozen for the cutover, in milliseconds' })
  freezeMs!: number | null;

  @ApiProperty({ nullable: true, type: Object, description: 'Per table: rows and order-independent checksum on both sides, and whether they agree' })
  verification!: Verification | null;

  @ApiProperty({ nullable: true, type: String, description: 'Why the move stopped, failed or was aborted' })
  error!: string | null;

  @ApiProperty({ description: 'An abort was asked for while another process runs the move' })
  abortRequested!: boolean;

  @ApiProperty({ nullable: true, type: String, format: 'date-time', description: 'When the source is cleaned up (flipped moves)' })
  cleanupAfter!: string | null;

  @ApiProperty({ type: String, format: 'date-time' })
  createdAt!: string;

  @ApiProperty({ type: String, format: 'date-time' })
  updatedAt!: string;

  @ApiProperty({ nullable: true, type: String, format: 'date-time' })
  flippedAt!: string | null;

  @ApiProperty({ nullable: true, type: String, format: 'date-time' })
  finishedAt!: string | null;

  static from(m: MoveRecord, state: MoveState): MoveDto {
    const iso = (d: Date | null) => d?.toISOString() ?? null;
    const copyDone = !['pending', 'preparing', 'copying'].includes(m.phase) && m.phase !== 'aborted' && m.phase !== 'failed';
    return {
      id: m.id,
      tenantId: m.tenantId,
      phase: m.phase,
      state,
      source: { tier: m.source.tier, server: m.source.serverKey },
      target: { tier: m.target.tier, server: m.target.serverKey },
      rowsTotal: m.rowsTotal,
      rowsCopied: m.rowsCopied,
      percent: copyDone ? 100 : m.rowsTotal === 0 ? 0 : Math.floor((100 * m.rowsCopied) / m.rowsTotal),
      tables: Object.entries(m.tables).map(([name, t]) => ({ name, rows: t.rows, copied: t.copied })),
      freezeMs: m.freezeMs,
      verification: m.verification,
      error: m.error,
      abortRequested: m.abortRequestedAt !== null,
      cleanupAfter: iso(m.cleanupAfter),
      createdAt: m.createdAt.toISOString(),
      updatedAt: m.updatedAt.toISOString(),
      flippedAt: iso(m.flippedAt),
      finishedAt: iso(m.finishedAt),
    };
  }
}

export class MoveListDto {
  @ApiProperty({ type: [MoveDto], description: 'Newest first (at most 50)' })
  items!: MoveDto[];
}
