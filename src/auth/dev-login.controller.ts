import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { ApiBadRequestResponse, ApiForbiddenResponse, ApiOkResponse, ApiProperty, ApiTags } from '@nestjs/swagger';
import { IsEmail, MaxLength } from 'class-validator';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { Public } from './auth-user.js';
import { AuthService } from './auth.service.js';

export class DevLoginDto {
  @ApiProperty({ example: 'admin@platform.test' })
  @IsEmail({}, { message: 'email must be an email address' })
  @MaxLength(320)
  email!: string;
}

class TokenUserDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() email!: string;
  @ApiProperty() platformAdmin!: boolean;
}

export class TokenDto {
  @ApiProperty() accessToken!: string;
  @ApiProperty({ example: 'Bearer' }) tokenType!: string;
  @ApiProperty({ description: 'Seconds' }) expiresIn!: number;
  @ApiProperty({ type: TokenUserDto }) user!: TokenUserDto;
}

/** Exists only when DEV_LOGIN_ENABLED (default outside production; refused in production). */
@ApiTags('auth')
@Controller('auth/dev')
export class DevLoginController {
  constructor(private readonly auth: AuthService) {}

  @Public()
  @Post('login')
  @HttpCode(200)
  @ApiOkResponse({ type: TokenDto })
  @ApiBadRequestResponse({ type: ErrorBodyDto })
  @ApiForbiddenResponse({ type: ErrorBodyDto, description: 'SSO_REQUIRED: the email is on a verified domain of a tenant that enforces SSO' })
  login(@Body() dto: DevLoginDto): Promise<TokenDto> {
    return this.auth.devSignIn(dto.email);
  }
}
