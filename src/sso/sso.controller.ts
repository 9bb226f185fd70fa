import { Body, Controller, Get, HttpCode, Patch, Post, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiOkResponse,
  ApiOperation,
  ApiServiceUnavailableResponse,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { ValidationFailed } from '../http/domain-error.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import type { Actor } from '../lifecycle/actor.js';
import { TenantContextStore } from '../tenancy/tenant-context.js';
import { AllowRoles, TenantScoped } from '../tenancy/tenant-scoped.decorator.js';
import { TenancyError } from '../tenancy/tenancy.errors.js';
import { LinkSsoDto, PortalLinkDto, PortalLinkResponseDto, SsoSettingsDto, SsoStateDto } from './dto/sso.dto.js';
import { SsoService } from './sso.service.js';

/** A tenant's SSO: its WorkOS organization, settings and the Admin Portal (owners and admins). */
@ApiTags('sso')
@ApiBadRequestResponse({ type: ErrorBodyDto })
@ApiServiceUnavailableResponse({ type: ErrorBodyDto, description: 'SSO is not configured, or WorkOS is unreachable' })
// The link lives in the control plane: no tenant transaction.
@TenantScoped({ transaction: false })
@AllowRoles('owner', 'admin')
@Controller('orgs/:slug/sso')
export class SsoController {
  constructor(
    private readonly sso: SsoService,
    private readonly context: TenantContextStore,
  ) {}

  private actor(req: FastifyRequest): Actor {
    return { kind: 'user', id: this.context.require().access.userId, requestId: String(req.id) };
  }

  @Get()
  @AllowRoles('owner', 'admin')
  @ApiOkResponse({ type: SsoStateDto, description: 'The link, its settings, its domains (verification refreshed from WorkOS) and the connection and directory states' })
  async state(): Promise<SsoStateDto> {
    return SsoStateDto.from(await this.sso.state(this.context.require().access.route));
  }

  @Post()
  @AllowRoles('owner', 'admin')
  @ApiOperation({ summary: "Link the tenant to a WorkOS organization: a new one with the tenant's domains (and the tenant id as its external id), or an existing one" })
  @ApiCreatedResponse({ type: SsoStateDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'Linked already, or the organization or a domain is taken' })
  async link(@Body() dto: LinkSsoDto, @Req() req: FastifyRequest): Promise<SsoStateDto> {
    if (!dto.workosOrganizationId && !dto.domains?.length) {
      throw new ValidationFailed('domains', 'give domains to create a WorkOS organization, or workosOrganizationId to link an existing one');
    }
    if (dto.workosOrganizationId && dto.domains?.length) {
      throw new ValidationFailed('domains', "an existing organization keeps its own domains: give either domains or workosOrganizationId");
    }
    const { route } = this.context.require().access;
    return SsoStateDto.from(await this.sso.link(route, { organizationId: dto.workosOrganizationId, domains: dto.domains?.map((d) => d.toLowerCase()) }, this.actor(req)));
  }

  @Patch()
  @AllowRoles('owner', 'admin')
  @ApiOperation({ summary: 'Change SSO enforcement, IdP-initiated sign-in, the role mapping and the default role' })
  @ApiOkResponse({ type: SsoStateDto })
  async settings(@Body() dto: SsoSettingsDto, @Req() req: FastifyRequest): Promise<SsoStateDto> {
    const { route, role } = this.context.require().access;
    // Mapping people to owner is the owner's call: an admin could otherwise make themselves one.
    if (dto.roleMapping && Object.values(dto.roleMapping).includes('owner') && role !== 'owner') {
      throw new TenancyError('ROLE_FORBIDDEN', "only owners may map an identity provider role or group to 'owner'");
    }
    return SsoStateDto.from(await this.sso.updateSettings(route, dto, this.actor(req)));
  }

  @Post('portal-link')
  @HttpCode(200)
  @AllowRoles('owner', 'admin')
  @ApiOperation({ summary: "An Admin Portal link, so the customer's IT sets up the SAML connection (sso) or directory sync (dsync) themselves" })
  @ApiOkResponse({ type: PortalLinkResponseDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'Not linked yet' })
  async portalLink(@Body() dto: PortalLinkDto): Promise<PortalLinkResponseDto> {
    return { link: await this.sso.portalLink(this.context.require().access.route, dto.intent) };
  }
}
