import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import {
  ArrayMaxSize,
  ArrayUnique,
  IsBoolean,
  IsEmail,
  IsFQDN,
  IsIn,
  IsOptional,
  IsString,
  Length,
  Matches,
  MaxLength,
  registerDecorator,
  ValidationArguments,
} from 'class-validator';
import { ROLES, type Role, SLUG_PATTERN, SLUG_RULE } from '../../tenancy/tenant-route.js';
import type { SsoSignIn, SsoState } from '../sso.service.js';

const MAPPABLE_DEFAULTS = ['admin', 'member', 'viewer', 'billing'] as const;

/** An object of at most 100 IdP role slugs or group names (1-200 characters) to tenant roles. */
function IsRoleMapping(): PropertyDecorator {
  return (target, propertyName) =>
    registerDecorator({
      name: 'isRoleMapping',
      target: target.constructor,
      propertyName: propertyName as string,
      validator: {
        validate(value: unknown) {
          if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
          const entries = Object.entries(value);
          return entries.length <= 100 && entries.every(([k, v]) => k.length >= 1 && k.length <= 200 && (ROLES as readonly string[]).includes(v as string));
        },
        defaultMessage: (args?: ValidationArguments) =>
          `${args?.property} must map at most 100 IdP role slugs or group names (1-200 characters) to one of: ${ROLES.join(', ')}`,
      },
    });
}

export class LinkSsoDto {
  @ApiPropertyOptional({ example: 'org_01HZY…', description: 'Link an existing WorkOS organization instead of creating one' })
  @IsOptional()
  @IsString()
  @Matches(/^org_[A-Za-z0-9]{1,64}$/, { message: 'workosOrganizationId must be a WorkOS organization id (org_…)' })
  workosOrganizationId?: string;

  @ApiPropertyOptional({ example: ['acme.com'], description: "The company's email domains (new organization only); pending until verified in the Admin Portal" })
  @IsOptional()
  @ArrayMaxSize(20)
  @ArrayUnique()
  @IsFQDN({ require_tld: true }, { each: true, message: 'each of domains must be a domain name such as acme.com' })
  @MaxLength(253, { each: true })
  domains?: string[];
}

export class SsoSettingsDto {
  @ApiPropertyOptional({ description: 'Members on a verified domain may then sign in only through SSO' })
  @IsOptional()
  @IsBoolean()
  enforceSso?: boolean;

  @ApiPropertyOptional({ description: 'Accept sign-ins started at the identity provider (no state)' })
  @IsOptional()
  @IsBoolean()
  allowIdpInitiated?: boolean;

  @ApiPropertyOptional({
    example: { 'okta-admins': 'admin', engineering: 'member', finance: 'billing' },
    description: "IdP role slug or group name -> tenant role; only owners may map anything to 'owner'",
  })
  @IsOptional()
  @IsRoleMapping()
  roleMapping?: Record<string, Role>;

  @ApiPropertyOptional({ enum: MAPPABLE_DEFAULTS, description: 'The role of people no mapping entry matches' })
  @IsOptional()
  @IsIn(MAPPABLE_DEFAULTS, { message: `defaultRole must be one of: ${MAPPABLE_DEFAULTS.join(', ')}` })
  defaultRole?: (typeof MAPPABLE_DEFAULTS)[number];
}

export class PortalLinkDto {
  @ApiProperty({ enum: ['sso', 'dsync'], description: 'sso: set up the SAML connection; dsync: set up directory sync (SCIM)' })
  @IsIn(['sso', 'dsync'], { message: 'intent must be one of: sso, dsync' })
  intent!: 'sso' | 'dsync';
}

export class PortalLinkResponseDto {
  @ApiProperty({ description: "A one-time Admin Portal link for the customer's IT" })
  link!: string;
}

export class AuthorizeQuery {
  @ApiPropertyOptional({ example: 'jane@acme.com', description: "Find the tenant by this email's verified domain" })
  @IsOptional()
  @IsEmail({}, { message: 'email must be an email address' })
  @MaxLength(320)
  email?: string;

  @ApiPropertyOptional({ example: 'acme', description: 'Or by tenant slug' })
  @IsOptional()
  @IsString()
  @Matches(SLUG_PATTERN, { message: SLUG_RULE })
  org?: string;
}

export class CallbackQuery {
  @ApiPropertyOptional({ description: 'The authorization code from WorkOS' })
  @IsOptional()
  @IsString()
  @Length(1, 1000)
  code?: string;

  @ApiPropertyOptional({ description: 'The state given at authorize (absent for sign-ins started at the identity provider)' })
  @IsOptional()
  @IsString()
  @Length(1, 2000)
  state?: string;

  @ApiPropertyOptional({ description: 'Set by WorkOS when the sign-in failed' })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  error?: string;

  @ApiPropertyOptional()
  @IsOptional()
  @IsString()
  @MaxLength(2000)
  error_description?: string;
}

export class SsoDomainDto {
  @ApiProperty({ example: 'acme.com' }) domain!: string;
  @ApiProperty({ description: 'Only verified domains route sign-ins and enforce SSO' }) verified!: boolean;
}

export class SsoStateDto {
  @ApiProperty() linked!: boolean;
  @ApiProperty({ nullable: true, type: String, example: 'org_01HZY…' }) workosOrganizationId!: string | null;
  @ApiProperty({ type: [SsoDomainDto] }) domains!: SsoDomainDto[];
  @ApiProperty() enforceSso!: boolean;
  @ApiProperty() allowIdpInitiated!: boolean;
  @ApiProperty({ type: Object, example: { 'okta-admins': 'admin' } }) roleMapping!: Record<string, Role>;
  @ApiProperty({ enum: MAPPABLE_DEFAULTS }) defaultRole!: string;
  @ApiProperty({ enum: ['none', 'active', 'inactive'], description: 'The SAML connection, as WorkOS last reported it' }) connectionState!: string;
  @ApiProperty({ enum: ['none', 'active', 'inactive'], description: 'Directory sync, as WorkOS last reported it' }) directoryState!: string;
  @ApiProperty({ description: 'False when WorkOS could not be asked just now (domains as last known)' }) fresh!: boolean;

  static from(s: SsoState): SsoStateDto {
    return {
      linked: s.link !== null,
      workosOrganizationId: s.link?.organizationId ?? null,
      domains: s.domains,
      enforceSso: s.link?.enforceSso ?? false,
      allowIdpInitiated: s.link?.allowIdpInitiated ?? false,
      roleMapping: s.link?.roleMapping ?? {},
      defaultRole: s.link?.defaultRole ?? 'member',
      connectionState: s.link?.connectionState ?? 'none',
      directoryState: s.link?.directoryState ?? 'none',
      fresh: s.fresh,
    };
  }
}

class SignedInTenantDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() slug!: string;
}

class SignedInUserDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() email!: string;
  @ApiProperty({ description: 'Always false for SSO sessions: no identity provider makes platform admins' }) platformAdmin!: boolean;
}

export class SsoSignInDto {
  @ApiProperty() accessToken!: string;
  @ApiProperty({ example: 'Bearer' }) tokenType!: string;
  @ApiProperty({ description: 'Seconds' }) expiresIn!: number;
  @ApiProperty({ type: SignedInUserDto }) user!: SignedInUserDto;
  @ApiProperty({ type: SignedInTenantDto, description: 'The tenant signed into; the same token works in every tenant the person belongs to' })
  tenant!: SignedInTenantDto;
  @ApiProperty({ enum: ROLES, description: 'The role in that tenant, from its role mapping' }) role!: Role;

  static from(s: SsoSignIn): SsoSignInDto {
    return { accessToken: s.accessToken, tokenType: s.tokenType, expiresIn: s.expiresIn, user: s.user, tenant: s.tenant, role: s.role };
  }
}
