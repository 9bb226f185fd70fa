import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsDate, IsIn, IsInt, IsOptional, IsString, Matches, Max, MaxLength, Min } from 'class-validator';
import type { AuditRecord, ChainVerification } from '../audit-log.js';

const ACTOR_KINDS = ['user', 'support', 'system', 'identity_provider'] as const;

export class AuditQueryDto {
  @ApiPropertyOptional({ description: 'Entries by this actor (a user id)' })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  actor?: string;

  @ApiPropertyOptional({ enum: ACTOR_KINDS })
  @IsOptional()
  @IsIn(ACTOR_KINDS, { message: `actorKind must be one of: ${ACTOR_KINDS.join(', ')}` })
  actorKind?: (typeof ACTOR_KINDS)[number];

  @ApiPropertyOptional({ example: 'project.created' })
  @IsOptional()
  @Matches(/^[a-z_]+(\.[a-z_]+)+$/, { message: 'action must look like project.created' })
  action?: string;

  @ApiPropertyOptional({ example: 'project' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  targetType?: string;

  @ApiPropertyOptional()
  @IsOptional()
  @IsString()
  @MaxLength(200)
  targetId?: string;

  @ApiPropertyOptional({ type: String, format: 'date-time', description: 'From this time (inclusive)' })
  @IsOptional()
  @Type(() => Date)
  @IsDate({ message: 'from must be an ISO 8601 date-time' })
  from?: Date;

  @ApiPropertyOptional({ type: String, format: 'date-time', description: 'Before this time' })
  @IsOptional()
  @Type(() => Date)
  @IsDate({ message: 'to must be an ISO 8601 date-time' })
  to?: Date;

  @ApiPropertyOptional({ minimum: 1, maximum: 500, default: 50 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(500)
  limit = 50;

  @ApiPropertyOptional({ description: 'nextCursor of the previous page' })
  @IsOptional()
  @Matches(/^[1-9][0-9]{0,17}$/, { message: 'cursor must be a cursor returned by the previous page' })
  cursor?: string;
}

export class AuditExportQueryDto extends AuditQueryDto {
  @ApiPropertyOptional({ enum: ['ndjson', 'csv'], default: 'ndjson' })
  @IsOptional()
  @IsIn(['ndjson', 'csv'], { message: 'format must be one of: ndjson, csv' })
  format: 'ndjson' | 'csv' = 'ndjson';
}

export class AuditEntryDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ nullable: true, type: Number, description: "Position in the tenant's chain, from 1, without gaps; null for a moment after the write, until sealed" })
  seq!: number | null;
  @ApiProperty({ enum: ACTOR_KINDS }) actorKind!: string;
  @ApiProperty({ nullable: true, type: String }) actorId!: string | null;
  @ApiProperty({ example: 'project.created' }) action!: string;
  @ApiProperty({ nullable: true, type: String }) targetType!: string | null;
  @ApiProperty({ nullable: true, type: String }) targetId!: string | null;
  @ApiProperty({ type: Object }) metadata!: Record<string, unknown>;
  @ApiProperty({ nullable: true, type: String }) requestId!: string | null;
  @ApiProperty({ nullable: true, type: String }) ip!: string | null;
  @ApiProperty({ nullable: true, type: String }) userAgent!: string | null;
  @ApiProperty({ type: String, format: 'date-time' }) createdAt!: string;
  @ApiProperty({ nullable: true, type: String, description: 'SHA-256 (hex) of the previous hash and this entry (null until sealed)' }) hash!: string | null;

  static from(r: AuditRecord): AuditEntryDto {
    return { ...r, createdAt: r.createdAt.toISOString() };
  }
}

export class AuditPageDto {
  @ApiProperty({ type: [AuditEntryDto], description: 'Newest first' }) items!: AuditEntryDto[];
  @ApiProperty({ nullable: true, type: String }) nextCursor!: string | null;
}

class ChainBreakDto {
  @ApiProperty() seq!: number;
  @ApiProperty({ nullable: true, type: String }) id!: string | null;
  @ApiProperty({ enum: ['hash_mismatch', 'sequence_gap', 'truncated', 'head_mismatch'] }) reason!: string;
}

class ChainHeadDto {
  @ApiProperty() seq!: number;
  @ApiProperty() hash!: string;
}

export class AuditVerificationDto {
  @ApiProperty() ok!: boolean;
  @ApiProperty({ description: 'Sealed entries checked' }) entries!: number;
  @ApiProperty({ description: 'Entries not sealed yet (written a moment ago)' }) pending!: number;
  @ApiProperty({ type: ChainHeadDto, nullable: true }) head!: ChainHeadDto | null;
  @ApiPropertyOptional({ type: ChainBreakDto, description: 'The first entry where the chain breaks' }) firstBreak?: ChainBreakDto;
  @ApiProperty({ type: ChainHeadDto, nullable: true, description: 'The last checkpoint the platform recorded before this check' })
  checkpoint!: ChainHeadDto | null;

  static from(v: ChainVerification, checkpoint: ChainHeadDto | null): AuditVerificationDto {
    return { ...v, checkpoint };
  }
}
