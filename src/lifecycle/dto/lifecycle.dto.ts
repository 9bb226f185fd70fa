import { ApiProperty } from '@nestjs/swagger';
import { IsString } from 'class-validator';
import { IsStorableText } from '../../http/validation.js';
import { TIERS } from '../../tenancy/tenant-route.js';
import type { StoredReceipt } from '../tenant-purge.js';

export class SuspendTenantDto {
  @ApiProperty({ example: 'invoice 2026-031 unpaid', description: 'Shown to the tenant\'s members in the 403 TENANT_SUSPENDED; 1-500 characters' })
  @IsString()
  @IsStorableText(1, 500)
  reason!: string;
}

export class ReceiptTenantDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() slug!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ enum: TIERS }) tier!: string;
  @ApiProperty({ example: 'primary' }) server!: string;
  @ApiProperty() database!: string;
  @ApiProperty() schema!: string;
}

export class ReceiptActorDto {
  @ApiProperty({ enum: ['user', 'support', 'system', 'operator'] }) kind!: string;
  @ApiProperty({ nullable: true, type: String, description: 'user id, operator (OS user) or job name' }) id!: string | null;
}

export class PurgedTableDto {
  @ApiProperty({ example: 'tasks' }) name!: string;
  @ApiProperty() rowsRemoved!: number;
  @ApiProperty({ description: 'Recount after the removal (always 0 in a receipt)' }) rowsRemaining!: number;
}

export class PurgedPlacementDto {
  @ApiProperty({ enum: ['current', 'move_source'], description: 'The tenant\'s placement, or the source a flipped move left behind' }) role!: string;
  @ApiProperty({ nullable: true, type: String, format: 'uuid' }) moveId!: string | null;
  @ApiProperty({ enum: TIERS }) tier!: string;
  @ApiProperty() server!: string;
  @ApiProperty() database!: string;
  @ApiProperty() schema!: string;
  @ApiProperty({ description: 'The schema or database still existed when the purge ran (false: an interrupted earlier attempt had removed it)' }) found!: boolean;
  @ApiProperty({ type: [PurgedTableDto], description: 'In removal order (children first)' }) tables!: PurgedTableDto[];
  @ApiProperty({ nullable: true, enum: ['schema', 'database'], type: String }) dropped!: string | null;
  @ApiProperty({ description: 'Checked afterwards: no row of the tenant left, its own schema or database no longer exists' }) gone!: boolean;
}

export class ReceiptVerificationDto {
  @ApiProperty() rowsRemaining!: number;
  @ApiProperty({ description: 'Own schemas or databases that still exist' }) objectsRemaining!: number;
  @ApiProperty() membershipsRemaining!: number;
  @ApiProperty() tenantRowsRemaining!: number;
  @ApiProperty() nothingLeft!: boolean;
}

export class EarlierAttemptDto {
  @ApiProperty({ format: 'date-time' }) startedAt!: string;
  @ApiProperty() rowsFound!: number;
}

export class ReceiptDto {
  @ApiProperty({ example: 'tenant-purge-receipt/v1' }) format!: string;
  @ApiProperty({ type: ReceiptTenantDto }) tenant!: ReceiptTenantDto;
  @ApiProperty({ format: 'date-time' }) deletionRequestedAt!: string;
  @ApiProperty({ format: 'date-time' }) purgeAfter!: string;
  @ApiProperty({ format: 'date-time' }) purgedAt!: string;
  @ApiProperty({ type: ReceiptActorDto }) purgedBy!: ReceiptActorDto;
  @ApiProperty({ type: [PurgedPlacementDto] }) placements!: PurgedPlacementDto[];
  @ApiProperty() rowsRemoved!: number;
  @ApiProperty() membershipsRemoved!: number;
  @ApiProperty({ type: ReceiptVerificationDto }) verification!: ReceiptVerificationDto;
  @ApiProperty({ type: [EarlierAttemptDto], description: 'Attempts that stopped half way (a crash) before this one finished' }) earlierAttempts!: EarlierAttemptDto[];
}

export class PurgeReceiptDto {
  @ApiProperty({ format: 'uuid', description: 'The tenant.purged entry of the platform audit log' })
  auditEntryId!: string;

  @ApiProperty({ format: 'uuid' })
  tenantId!: string;

  @ApiProperty({ format: 'date-time' })
  recordedAt!: string;

  @ApiProperty({ type: ReceiptDto, description: 'Exactly as recorded; its sha256 covers it' })
  receipt!: ReceiptDto;

  @ApiProperty({
    example: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
    description: 'Hex SHA-256 of the receipt as canonical JSON (keys sorted at every level, no white space, UTF-8)',
  })
  sha256!: string;

  /** The receipt is passed through untouched: any reshaping would break its digest. */
  static from(s: StoredReceipt): PurgeReceiptDto {
    return { auditEntryId: s.auditEntryId, tenantId: s.tenantId, recordedAt: s.recordedAt.toISOString(), receipt: s.receipt, sha256: s.sha256 };
  }
}
