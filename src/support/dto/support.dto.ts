import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsBoolean, IsDefined, IsIn, IsInt, IsOptional, IsString, Matches, Min } from 'class-validator';
import { PageQuery } from '../../http/page.dto.js';
import { IsStorableText } from '../../http/validation.js';
import { SLUG_PATTERN, SLUG_RULE } from '../../tenancy/tenant-route.js';
import {
  APPROVER_KINDS,
  GRANT_ACCESS,
  GRANT_STATUSES,
  type GrantAccess,
  type GrantPerson,
  type SupportGrant,
  type SupportSettings,
  WRITE_APPROVERS,
  type WriteApprover,
} from '../support-grants.store.js';

export class RequestGrantDto {
  @ApiProperty({ example: 'acme', description: 'Slug of the tenant to reach into' })
  @IsString()
  @Matches(SLUG_PATTERN, { message: `tenant: ${SLUG_RULE}` })
  tenant!: string;

  @ApiProperty({ example: 'customer reports tasks missing from project Launch', description: 'Why support needs access; shown to the tenant; 1-500 characters' })
  @IsDefined({ message: 'reason is required: say why support needs access' })
  @IsString()
  @IsStorableText(1, 500)
  reason!: string;

  @ApiPropertyOptional({ example: 'SUP-1234', description: 'Support ticket reference; 1-200 characters' })
  @IsOptional()
  @IsString()
  @IsStorableText(1, 200)
  ticket?: string;

  @ApiProperty({ enum: GRANT_ACCESS, description: 'read: like a viewer, in READ ONLY transactions; write: like a member (always needs approval)' })
  @IsIn(GRANT_ACCESS, { message: `access must be one of: ${GRANT_ACCESS.join(', ')}` })
  access!: GrantAccess;

  @ApiProperty({ example: 30, minimum: 1, description: 'How long the grant lasts once active; at most SUPPORT_GRANT_MAX_MINUTES (default 60)' })
  @IsInt({ message: 'minutes must be a whole number' })
  @Min(1, { message: 'minutes must be at least 1' })
  minutes!: number;
}

/** Deny or revoke: an optional reason, kept with the grant and in the audit log. */
export class GrantDecisionDto {
  @ApiPropertyOptional({ example: 'not during the quarter close', description: '1-500 characters' })
  @IsOptional()
  @IsString()
  @IsStorableText(1, 500)
  reason?: string;
}

export class ListGrantsQuery extends PageQuery {
  @ApiPropertyOptional({ example: 'acme', description: "Only this tenant's grants" })
  @IsOptional()
  @IsString()
  @Matches(SLUG_PATTERN, { message: `tenant: ${SLUG_RULE}` })
  tenant?: string;
}

export class SupportSettingsChangeDto {
  @ApiPropertyOptional({ description: 'Read grants wait for approval by an owner or admin (default: active at once)' })
  @IsOptional()
  @IsBoolean({ message: 'readRequiresApproval must be true or false' })
  readRequiresApproval?: boolean;

  @ApiPropertyOptional({ enum: WRITE_APPROVERS, description: "Who approves write grants: the tenant's owners and admins (default), or a platform admin" })
  @IsOptional()
  @IsIn(WRITE_APPROVERS, { message: `writeApprover must be one of: ${WRITE_APPROVERS.join(', ')}` })
  writeApprover?: WriteApprover;
}

export class SupportSettingsDto {
  @ApiProperty() readRequiresApproval!: boolean;
  @ApiProperty({ enum: WRITE_APPROVERS }) writeApprover!: WriteApprover;
  @ApiProperty({ nullable: true, type: String, format: 'date-time', description: 'null: never changed (the defaults)' }) updatedAt!: string | null;

  static from(s: SupportSettings): SupportSettingsDto {
    return { readRequiresApproval: s.readRequiresApproval, writeApprover: s.writeApprover, updatedAt: s.updatedAt?.toISOString() ?? null };
  }
}

export class GrantPersonDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ nullable: true, type: String }) email!: string | null;

  static from(p: GrantPerson | null): GrantPersonDto | null {
    return p ? { id: p.id, email: p.email } : null;
  }
}

export class GrantTenantDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() slug!: string;
}

const iso = (d: Date | null) => d?.toISOString() ?? null;

export class SupportGrantDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ type: GrantTenantDto }) tenant!: GrantTenantDto;
  @ApiProperty({ type: GrantPersonDto, description: 'The support staff member who asked' }) requester!: GrantPersonDto;
  @ApiProperty() reason!: string;
  @ApiProperty({ nullable: true, type: String }) ticket!: string | null;
  @ApiProperty({ enum: GRANT_ACCESS }) access!: string;
  @ApiProperty() minutes!: number;
  @ApiProperty({ enum: GRANT_STATUSES, description: 'expired: an active grant past expiresAt, or a request nobody decided within 24 hours' }) status!: string;
  @ApiProperty({ format: 'date-time' }) requestedAt!: string;
  @ApiProperty({ enum: APPROVER_KINDS, description: 'Who approves (or approved): the tenant, a platform admin, or nobody (automatic read access)' }) approverKind!: string;
  @ApiProperty({ type: GrantPersonDto, nullable: true }) approvedBy!: GrantPersonDto | null;
  @ApiProperty({ nullable: true, type: String, format: 'date-time' }) approvedAt!: string | null;
  @ApiProperty({ nullable: true, type: String, format: 'date-time' }) expiresAt!: string | null;
  @ApiProperty({ type: GrantPersonDto, nullable: true }) deniedBy!: GrantPersonDto | null;
  @ApiProperty({ nullable: true, type: String, format: 'date-time' }) deniedAt!: string | null;
  @ApiProperty({ nullable: true, type: String }) denyReason!: string | null;
  @ApiProperty({ type: GrantPersonDto, nullable: true }) revokedBy!: GrantPersonDto | null;
  @ApiProperty({ nullable: true, type: String, format: 'date-time' }) revokedAt!: string | null;
  @ApiProperty({ nullable: true, type: String }) revokeReason!: string | null;

  static from(g: SupportGrant): SupportGrantDto {
    return {
      id: g.id,
      tenant: { id: g.tenantId, slug: g.tenantSlug },
      requester: GrantPersonDto.from(g.requester)!,
      reason: g.reason,
      ticket: g.ticket,
      access: g.access,
      minutes: g.minutes,
      status: g.status,
      requestedAt: g.requestedAt.toISOString(),
      approverKind: g.approverKind,
      approvedBy: GrantPersonDto.from(g.approvedBy),
      approvedAt: iso(g.approvedAt),
      expiresAt: iso(g.expiresAt),
      deniedBy: GrantPersonDto.from(g.deniedBy),
      deniedAt: iso(g.deniedAt),
      denyReason: g.denyReason,
      revokedBy: GrantPersonDto.from(g.revokedBy),
      revokedAt: iso(g.revokedAt),
      revokeReason: g.revokeReason,
    };
  }
}

export class SupportGrantPageDto {
  @ApiProperty({ type: [SupportGrantDto], description: 'Newest first' }) items!: SupportGrantDto[];
  @ApiProperty({ nullable: true, type: String, description: 'Pass as ?cursor= for the next page' }) nextCursor!: string | null;
}
