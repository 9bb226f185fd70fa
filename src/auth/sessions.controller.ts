import { Controller, HttpCode, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiNoContentResponse, ApiOkResponse, ApiProperty, ApiTags, ApiUnauthorizedResponse } from '@nestjs/swagger';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { AuthUser, CurrentUser } from './auth-user.js';
import { SessionStore } from './session-store.service.js';

export class SignedOutDto {
  @ApiProperty({ description: 'Sessions closed' })
  revoked!: number;
}

/** Ending sessions: they stop working on the next request, on every app instance. */
@ApiTags('auth')
@ApiBearerAuth()
@ApiUnauthorizedResponse({ type: ErrorBodyDto })
@Controller('auth')
export class SessionsController {
  constructor(private readonly sessions: SessionStore) {}

  @Post('logout')
  @HttpCode(204)
  @ApiNoContentResponse({ description: "This token's session is closed" })
  async logout(@CurrentUser() user: AuthUser): Promise<void> {
    await this.sessions.revoke(user.sessionId, 'logout');
  }

  @Post('logout/all')
  @HttpCode(200)
  @ApiOkResponse({ type: SignedOutDto, description: 'Every session of the caller is closed ("sign out everywhere")' })
  async logoutEverywhere(@CurrentUser() user: AuthUser): Promise<SignedOutDto> {
    return { revoked: await this.sessions.revokeAllOf(user.id, 'sign out everywhere') };
  }
}
