import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsIn, IsInt, IsOptional, Max, Min, ValidateBy, ValidationArguments } from 'class-validator';
import { TIERS, type Tier } from '../../tenancy/tenant-route.js';
import { DEFAULT_RANGE_DAYS, isDay, MAX_RANGE_DAYS, TOP_BY, type TopBy, type TopTenant, type UsageDay } from '../usage-queries.js';

/** A real calendar day written YYYY-MM-DD. */
function IsDay(): PropertyDecorator {
  return ValidateBy({
    name: 'isDay',
    validator: {
      validate: (value: unknown) => isDay(value),
      defaultMessage: (args?: ValidationArguments) => `${args?.property ?? 'value'} must be a calendar date written YYYY-MM-DD`,
    },
  });
}

export class UsageRangeQuery {
  @ApiPropertyOptional({ example: '2026-01-01', description: `First UTC day (included); default: ${DEFAULT_RANGE_DAYS - 1} days before \`to\`` })
  @IsOptional()
  @IsDay()
  from?: string;

  @ApiPropertyOptional({ example: '2026-01-31', description: `Last UTC day (included), at most ${MAX_RANGE_DAYS} days after \`from\`; default: today (UTC)` })
  @IsOptional()
  @IsDay()
  to?: string;
}

export class TopUsageQuery extends UsageRangeQuery {
  @ApiPropertyOptional({ enum: TOP_BY, default: 'requests', description: 'requests: most requests first; db_time: most database time first' })
  @IsOptional()
  @IsIn(TOP_BY, { message: `by must be one of: ${TOP_BY.join(', ')}` })
  by: TopBy = 'requests';

  @ApiPropertyOptional({ minimum: 1, maximum: 100, default: 10 })
  @IsOptional()
  @Type(() => Number)
  @IsInt({ message: 'limit must be an integer' })
  @Min(1)
  @Max(100)
  limit = 10;
}

export class UsageTotalsDto {
  @ApiProperty({ description: 'Requests the tenant was admitted to, whatever their outcome' }) requests!: number;
  @ApiProperty({ description: 'Of those, answered with a status of 400 or more' }) errors!: number;
  @ApiProperty({ description: 'Of those, other than GET, HEAD and OPTIONS and answered below 400' }) writes!: number;
  @ApiProperty({ description: 'Milliseconds requests held a connection and transaction of the tenant' }) dbTimeMs!: number;
}

export class UsageDayDto extends UsageTotalsDto {
  @ApiProperty({ example: '2026-01-31', description: 'UTC day' }) day!: string;

  @ApiProperty({
    type: 'object',
    additionalProperties: { type: 'integer' },
    nullable: true,
    example: { projects: 12, tasks: 340, audit_log: 900 },
    description: "Rows per table at the day's last snapshot (see USAGE_SNAPSHOT_INTERVAL_MS); null when none was taken that day",
  })
  rowsStored!: Record<string, number> | null;

  @ApiProperty({ type: Number, nullable: true, description: "Members at the day's last snapshot; null when none was taken that day" })
  activeSeats!: number | null;

  static from(d: UsageDay): UsageDayDto {
    return {
      day: d.day,
      requests: d.requests,
      errors: d.errors,
      writes: d.writes,
      dbTimeMs: roundMs(d.dbTimeMs),
      rowsStored: d.rowsStored,
      activeSeats: d.activeSeats,
    };
  }
}

export class UsageReportDto {
  @ApiProperty({ format: 'uuid' }) tenantId!: string;
  @ApiProperty({ example: 'acme' }) slug!: string;
  @ApiProperty({ enum: TIERS }) tier!: Tier;
  @ApiProperty({ example: '2026-01-01' }) from!: string;
  @ApiProperty({ example: '2026-01-30' }) to!: string;

  @ApiProperty({ type: [UsageDayDto], description: 'Days with usage, oldest first (days without any are left out)' })
  days!: UsageDayDto[];

  @ApiProperty({ type: UsageTotalsDto, description: 'Sums over the days' })
  totals!: UsageTotalsDto;

  static from(tenant: { id: string; slug: string; tier: Tier }, from: string, to: string, days: UsageDay[]): UsageReportDto {
    const totals = { requests: 0, errors: 0, writes: 0, dbTimeMs: 0 };
    for (const d of days) {
      totals.requests += d.requests;
      totals.errors += d.errors;
      totals.writes += d.writes;
      totals.dbTimeMs += d.dbTimeMs;
    }
    totals.dbTimeMs = roundMs(totals.dbTimeMs);
    return { tenantId: tenant.id, slug: tenant.slug, tier: tenant.tier, from, to, days: days.map(UsageDayDto.from), totals };
  }
}

export class TopTenantDto extends UsageTotalsDto {
  @ApiProperty({ format: 'uuid' }) tenantId!: string;
  @ApiProperty({ example: 'acme' }) slug!: string;
  @ApiProperty({ enum: TIERS }) tier!: Tier;

  static from(t: TopTenant): TopTenantDto {
    return { tenantId: t.tenantId, slug: t.slug, tier: t.tier, requests: t.requests, errors: t.errors, writes: t.writes, dbTimeMs: roundMs(t.dbTimeMs) };
  }
}

export class TopUsageDto {
  @ApiProperty({ enum: TOP_BY }) by!: TopBy;
  @ApiProperty({ example: '2026-01-01' }) from!: string;
  @ApiProperty({ example: '2026-01-30' }) to!: string;
  @ApiProperty({ type: [TopTenantDto], description: 'Noisiest first' }) items!: TopTenantDto[];
}

function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
