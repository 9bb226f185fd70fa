import { Injectable } from '@nestjs/common';
import { createSecretKey } from 'node:crypto';
import { ConfigService } from '@nestjs/config';
import { PassportStrategy } from '@nestjs/passport';
import { ExtractJwt, Strategy } from 'passport-jwt';
import type { AppConfig } from '../../config/configuration.js';
import { isUuid } from '../../libs/postgres/index.js';
import type { AuthUser } from './auth-user.js';

export const TOKEN_ISSUER = 'tenancy-platform';

interface TokenPayload {
  sub?: unknown;
  email?: unknown;
  sid?: unknown;
  /** How the session was opened: 'dev' or 'sso'. */
  amr?: unknown;
}

@Injectable()
export class JwtStrategy extends PassportStrategy(Strategy, 'jwt') {
  private readonly admins: Set<string>;
  private readonly supportStaff: Set<string>;

  constructor(config: ConfigService<AppConfig, true>) {
    const auth = config.get('auth', { infer: true });
    super({
      jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
      // A KeyObject made once: given a string, jsonwebtoken first tries (and fails) to parse it as
      // a public key on every request, which cost about a tenth of all CPU per request.
      secretOrKey: createSecretKey(Buffer.from(auth.jwtSecret!)) as unknown as string,
      algorithms: ['HS256'],
      issuer: TOKEN_ISSUER,
      ignoreExpiration: false,
    });
    this.admins = new Set(auth.platformAdminEmails);
    this.supportStaff = new Set(auth.supportStaffEmails);
  }

  /** A valid signature and well-formed claims; whether the session is still open is JwtAuthGuard's check. */
  validate(payload: TokenPayload): AuthUser | false {
    if (!isUuid(payload.sub) || typeof payload.email !== 'string' || !isUuid(payload.sid)) return false;
    // Admin rights are read from configuration on every request, so removing an email revokes them;
    // and never come from an identity provider, whatever email it asserts.
    const platformAdmin = payload.amr !== 'sso' && this.admins.has(payload.email.toLowerCase());
    // Support staff likewise: a platform role from configuration, never vouched for by an IdP.
    const support = payload.amr !== 'sso' && this.supportStaff.has(payload.email.toLowerCase());
    return { id: payload.sub, email: payload.email, platformAdmin, support, sessionId: payload.sid };
  }
}
