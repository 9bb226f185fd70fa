import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { JwtService } from '@nestjs/jwt';
import type { AppConfig } from '../../config/configuration.js';
import { TenantDirectory } from '../tenancy/tenant-directory.service.js';
import { TOKEN_ISSUER } from './jwt.strategy.js';

export interface IssuedToken {
  accessToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
  user: { id: string; email: string; platformAdmin: boolean };
}

/** Issues the session tokens every sign-in method returns (the development login now, SSO later). */
@Injectable()
export class AuthService {
  private readonly ttl: number;
  private readonly admins: Set<string>;

  constructor(
    private readonly jwt: JwtService,
    private readonly directory: TenantDirectory,
    config: ConfigService<AppConfig, true>,
  ) {
    const auth = config.get('auth', { infer: true });
    this.ttl = auth.jwtTtlSeconds;
    this.admins = new Set(auth.platformAdminEmails);
  }

  async signIn(email: string): Promise<IssuedToken> {
    const user = await this.directory.ensureUser(email);
    const accessToken = await this.jwt.signAsync(
      { sub: user.id, email: user.email },
      { expiresIn: this.ttl, issuer: TOKEN_ISSUER, algorithm: 'HS256' },
    );
    return {
      accessToken,
      tokenType: 'Bearer',
      expiresIn: this.ttl,
      user: { id: user.id, email: user.email, platformAdmin: this.admins.has(user.email) },
    };
  }
}
