import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional, IsString, Matches } from 'class-validator';
import { IsStorableText } from '../../http/validation.js';
import { BILLING_STATUSES, type BillingStatus, type Plan } from '../features.js';
import type { BillingView } from '../billing.service.js';

const iso = (d: Date | null): string | null => d?.toISOString() ?? null;

/** Integer limits of a plan; null means unlimited. */
export class PlanLimitsDto {
  @ApiProperty({ nullable: true, type: Number, example: 25, description: 'Members of the tenant' })
  seats!: number | null;

  @ApiProperty({ nullable: true, type: Number, example: 50 })
  projects!: number | null;

  @ApiProperty({ nullable: true, type: Number, example: 5000 })
  tasks_per_project!: number | null;

  @ApiProperty({ nullable: true, type: Number, example: 6000, description: 'Per tenant and per minute' })
  api_requests_per_minute!: number | null;

  @ApiProperty({ nullable: true, type: Number, example: 5000, description: 'A query running longer is cancelled (503 QUERY_TIMEOUT)' })
  statement_timeout_ms!: number | null;

  @ApiProperty({ nullable: true, type: Number, example: 4, description: 'Requests of the tenant in flight at once' })
  concurrent_requests!: number | null;
}

/** On/off features of a plan: which placement tiers it includes. */
export class PlanFlagsDto {
  @ApiProperty({ example: true })
  tier_shared!: boolean;

  @ApiProperty({ example: true })
  tier_schema!: boolean;

  @ApiProperty({ example: false })
  tier_dedicated!: boolean;
}

export class PlanDto {
  @ApiProperty({ example: 'pro' })
  key!: string;

  @ApiProperty({ example: 'Pro' })
  name!: string;

  @ApiProperty({ example: 20, description: 'Cheapest first' })
  rank!: number;

  @ApiProperty({ type: PlanLimitsDto })
  limits!: PlanLimitsDto;

  @ApiProperty({ type: PlanFlagsDto })
  flags!: PlanFlagsDto;

  static from(p: Plan): PlanDto {
    return { key: p.key, name: p.name, rank: p.rank, limits: { ...p.limits }, flags: { ...p.flags } };
  }
}

export class PlanListDto {
  @ApiProperty({ type: [PlanDto], description: 'Cheapest first' })
  items!: PlanDto[];
}

export class TenantBillingDto {
  @ApiProperty({ format: 'uuid' })
  tenantId!: string;

  @ApiProperty({ example: 'acme' })
  slug!: string;

  @ApiProperty({ type: PlanDto })
  plan!: PlanDto;

  @ApiProperty({ enum: BILLING_STATUSES })
  status!: BillingStatus;

  @ApiProperty({ nullable: true, type: String, format: 'date-time' })
  trialEndsAt!: string | null;

  @ApiProperty({ nullable: true, type: String, format: 'date-time', description: 'End of the paid period, from the payment provider' })
  currentPeriodEnd!: string | null;

  @ApiProperty({ nullable: true, type: String, format: 'date-time', description: 'Set while past_due: the grace period counts from here' })
  pastDueSince!: string | null;

  @ApiProperty({ description: 'True when writes are refused (402 PAYMENT_REQUIRED) for non-payment; reads and exports keep working' })
  readOnly!: boolean;

  @ApiProperty({
    nullable: true,
    type: String,
    format: 'date-time',
    description: 'From when writes are refused: past due (or trialing) plus BILLING_PAST_DUE_GRACE_DAYS; in the future during the grace period; null when not unpaid',
  })
  readOnlySince!: string | null;

  @ApiProperty({ nullable: true, type: Number, example: 10, description: 'Seats bought (the subscription quantity); the plan limit is plan.limits.seats' })
  seatsPurchased!: number | null;

  @ApiProperty({ example: 4, description: 'Members of the tenant now' })
  seatsUsed!: number;

  @ApiProperty({ nullable: true, type: String, example: 'cus_Q1w2e3r4' })
  providerCustomerId!: string | null;

  @ApiProperty({ nullable: true, type: String, example: 'sub_1Q2w3e4r5t' })
  providerSubscriptionId!: string | null;

  @ApiProperty({ format: 'date-time' })
  updatedAt!: string;

  static from(v: BillingView): TenantBillingDto {
    return {
      tenantId: v.tenantId,
      slug: v.slug,
      plan: PlanDto.from(v.plan),
      status: v.state.status,
      trialEndsAt: iso(v.state.trialEndsAt),
      currentPeriodEnd: iso(v.state.currentPeriodEnd),
      pastDueSince: iso(v.state.pastDueSince),
      readOnly: v.readOnly,
      readOnlySince: iso(v.readOnlySince),
      seatsPurchased: v.state.seats,
      seatsUsed: v.seatsUsed,
      providerCustomerId: v.state.providerCustomerId,
      providerSubscriptionId: v.state.providerSubscriptionId,
      updatedAt: v.state.updatedAt.toISOString(),
    };
  }
}

export class ChangeBillingDto {
  @ApiProperty({ example: 'pro', description: 'A plan key (GET /plans); it must include the tenant\'s current tier' })
  @IsString()
  @Matches(/^[a-z][a-z0-9_-]{0,39}$/, { message: 'plan must be a plan key such as free, pro or enterprise' })
  plan!: string;

  @ApiPropertyOptional({ enum: BILLING_STATUSES, description: 'Default: unchanged. past_due starts the grace period now (kept if already past due)' })
  @IsOptional()
  @IsIn(BILLING_STATUSES, { message: `status must be one of: ${BILLING_STATUSES.join(', ')}` })
  status?: BillingStatus;

  @ApiPropertyOptional({ example: 'contract 2026-014 signed', description: 'Recorded in the audit logs; 1-500 characters' })
  @IsOptional()
  @IsString()
  @IsStorableText(1, 500)
  reason?: string;
}

export class StripeWebhookReceiptDto {
  @ApiProperty({ example: true })
  received!: true;

  @ApiProperty({ example: 'evt_1Q2w3e4r5t6y', description: "Stripe's event id" })
  id!: string;

  @ApiProperty({ description: 'True when this event was stored by an earlier delivery: nothing changed' })
  duplicate!: boolean;

  @ApiProperty({
    enum: ['applied', 'ignored'],
    description: 'applied: the tenant\'s billing state follows it; ignored: stored only (a type not acted on, no known tenant, or older than what was applied)',
  })
  outcome!: 'applied' | 'ignored';
}
