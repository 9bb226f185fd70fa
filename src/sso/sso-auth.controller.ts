import { Controller, Get, Query, Req, Res } from '@nestjs/common';
import { ApiBadRequestResponse, ApiForbiddenResponse, ApiFoundResponse, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Public } from '../auth/auth-user.js';
import { ValidationFailed } from '../http/domain-error.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { AuthorizeQuery, CallbackQuery, SsoSignInDto } from './dto/sso.dto.js';
import { SsoError } from './sso.errors.js';
import { SsoService } from './sso.service.js';

/** Signing in with the company's identity provider, through WorkOS. */
@ApiTags('auth')
@ApiBadRequestResponse({ type: ErrorBodyDto })
@ApiServiceUnavailableResponse({ type: ErrorBodyDto, description: 'SSO is not configured, or WorkOS is unreachable' })
@Controller('auth/sso')
export class SsoAuthController {
  constructor(private readonly sso: SsoService) {}

  @Public()
  @Get('authorize')
  @ApiOperation({ summary: "Start an SSO sign-in: redirects to the identity provider of the tenant of the email's verified domain (or of ?org=slug)" })
  @ApiFoundResponse({ description: 'Location: the WorkOS authorization URL, with a signed, short-lived, single-use state' })
  @ApiNotFoundResponse({ type: ErrorBodyDto, description: 'No tenant signs in with SSO for that domain or slug' })
  async authorize(@Query() q: AuthorizeQuery, @Res() reply: FastifyReply): Promise<void> {
    if (!q.email === !q.org) throw new ValidationFailed(q.email ? 'org' : 'email', 'give either email or org');
    reply.redirect(await this.sso.authorizeUrl({ email: q.email, org: q.org }), 302);
  }

  @Public()
  @Get('callback')
  @ApiOperation({
    summary: 'Finish an SSO sign-in: the code is exchanged through WorkOS, the person provisioned just in time with the mapped role, and a session opened',
  })
  @ApiOkResponse({ type: SsoSignInDto, description: 'The same session token as the development login' })
  @ApiForbiddenResponse({ type: ErrorBodyDto, description: 'Another organization, an email outside the verified domains, or IdP-initiated where not allowed' })
  async callback(@Query() q: CallbackQuery, @Req() req: FastifyRequest): Promise<SsoSignInDto> {
    if (q.error) throw new SsoError('SSO_CODE_INVALID', `the identity provider did not sign you in (${q.error}${q.error_description ? `: ${q.error_description}` : ''})`, 'code');
    if (!q.code) throw new ValidationFailed('code', 'code is required');
    return SsoSignInDto.from(await this.sso.callback(q.code, q.state, String(req.id)));
  }
}
