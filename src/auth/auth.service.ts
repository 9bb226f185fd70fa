import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { JwtService } from '@nestjs/jwt';
import type { AppConfig } from '../../config/configuration.js';
import { TenantDirectory, UserRecord } from '../tenancy/tenant-directory.service.js';
import { AuthError } from './auth.errors.js';
import { TOKEN_ISSUER } from './jwt.strategy.js';
import { SessionMethod, SessionStore } from './session-store.service.js';

export interface IssuedToken {
  accessToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
  user: { id: string; email: string; platformAdmin: boolean };
}

/** The domain of an email address, lowercased. */
export function emailDomain(email: string): string {
  return email.slice(email.lastIndexOf('@') + 1).trim().toLowerCase();
}

/** Issues the session tokens every sign-in method returns (the development login and SSO). */
@Injectable()
export class AuthService {
  private readonly ttl: number;
  private readonly admins: Set<string>;

  constructor(
    private readonly jwt: JwtService,
    private readonly directory: TenantDirectory,
    private readonly sessions: SessionStore,
    config: ConfigService<AppConfig, true>,
  ) {
    const auth = config.get('auth', { infer: true });
    this.ttl = auth.jwtTtlSeconds;
    this.admins = new Set(auth.platformAdminEmails);
  }

  /** The development login: refused for people whose company enforces SSO on their email's verified domain. */
  async devSignIn(email: string): Promise<IssuedToken> {
    const enforced = await this.directory.ssoEnforcedFor(emailDomain(email));
    if (enforced) {
      throw new AuthError('SSO_REQUIRED', `${emailDomain(email)} signs in through its identity provider: use GET /auth/sso/authorize?email=…`, 'email');
    }
    return this.issue(await this.directory.ensureUser(email), 'dev', null);
  }

  /** A new server-side session and its token; `tenantId` is the tenant whose identity provider vouched (SSO). */
  async issue(user: UserRecord, method: SessionMethod, tenantId: string | null): Promise<IssuedToken> {
    const session = await this.sessions.create(user.id, method, this.ttl, tenantId);
    const accessToken = await this.jwt.signAsync(
      { sub: user.id, email: user.email, sid: session.id, amr: method },
      { expiresIn: this.ttl, issuer: TOKEN_ISSUER, algorithm: 'HS256' },
    );
    return {
      accessToken,
      tokenType: 'Bearer',
      expiresIn: this.ttl,
      user: { id: user.id, email: user.email, platformAdmin: method !== 'sso' && this.admins.has(user.email) },
    };
  }
}
