import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsEmail, IsIn, IsInt, IsOptional, IsString, IsUUID, Matches, Max, MaxLength, Min } from 'class-validator';
import { IsStorableText } from '../../http/validation.js';
import { SLUG_PATTERN, SLUG_RULE, TIERS, type TenantRoute, type TenantStatus, type Tier } from '../tenant-route.js';

export class CreateTenantDto {
  @ApiProperty({ example: 'acme', description: '3-63 lowercase letters, digits and dashes; unique' })
  @IsString()
  @Matches(SLUG_PATTERN, { message: SLUG_RULE })
  slug!: string;

  @ApiProperty({ example: 'Acme Inc.' })
  @IsString()
  @IsStorableText(1, 200)
  name!: string;

  @ApiProperty({ enum: TIERS, example: 'shared' })
  @IsIn(TIERS, { message: `tier must be one of: ${TIERS.join(', ')}` })
  tier!: Tier;

  @ApiProperty({ example: 'a@acme.test', description: 'Becomes the first owner; the user is created if new' })
  @IsEmail({}, { message: 'ownerEmail must be an email address' })
  @MaxLength(320)
  ownerEmail!: string;

  @ApiPropertyOptional({ example: 'secondary', description: 'Registered server key (dedicated tier only); default: another server when there is one' })
  @IsOptional()
  @IsString()
  @Matches(/^[a-z][a-z0-9_-]{0,62}$/, { message: 'server must be a registered server key' })
  server?: string;

  @ApiPropertyOptional({ example: 'pro', description: 'Billing plan (free, pro, enterprise); default: BILLING_DEFAULT_PLAN when it allows the tier, else the cheapest plan that does' })
  @IsOptional()
  @IsString()
  @Matches(/^[a-z][a-z0-9_-]{0,39}$/, { message: 'plan must be a plan key such as free, pro or enterprise' })
  plan?: string;
}

export class ListTenantsQuery {
  @ApiPropertyOptional({ minimum: 1, maximum: 500, default: 50 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(500)
  limit = 50;

  @ApiPropertyOptional({ description: 'nextCursor of the previous page' })
  @IsOptional()
  @IsUUID('all', { message: 'cursor must be a cursor returned by the previous page' })
  cursor?: string;
}

export class PlacementDto {
  @ApiProperty({ enum: TIERS })
  tier!: Tier;

  @ApiProperty({ example: 'primary' })
  server!: string;
}

export class TenantDto {
  @ApiProperty({ format: 'uuid' })
  id!: string;

  @ApiProperty({ example: 'acme' })
  slug!: string;

  @ApiProperty()
  name!: string;

  @ApiProperty({ enum: ['provisioning', 'active', 'suspended', 'pending_deletion', 'failed'] })
  status!: TenantStatus;

  @ApiPropertyOptional({ nullable: true })
  statusReason!: string | null;

  @ApiProperty({ type: PlacementDto })
  placement!: PlacementDto;

  @ApiProperty({ nullable: true, type: String, format: 'date-time', description: 'When its deletion was asked for (pending_deletion only)' })
  deletionRequestedAt!: string | null;

  @ApiProperty({ nullable: true, type: String, format: 'date-time', description: 'From when its data may be purged; a platform admin can restore it until then (pending_deletion only)' })
  purgeAfter!: string | null;

  @ApiProperty()
  createdAt!: string;

  @ApiProperty()
  updatedAt!: string;

  /** Database and schema names are internal; tier and server are what an operator needs. */
  static from(r: TenantRoute): TenantDto {
    return {
      id: r.id,
      slug: r.slug,
      name: r.name,
      status: r.status,
      statusReason: r.statusReason,
      placement: { tier: r.placement.tier, server: r.placement.serverKey },
      deletionRequestedAt: r.deletionRequestedAt?.toISOString() ?? null,
      purgeAfter: r.purgeAfter?.toISOString() ?? null,
      createdAt: r.createdAt.toISOString(),
      updatedAt: r.updatedAt.toISOString(),
    };
  }
}

export class TenantPageDto {
  @ApiProperty({ type: [TenantDto] })
  items!: TenantDto[];

  @ApiPropertyOptional({ nullable: true, type: String })
  nextCursor!: string | null;
}
