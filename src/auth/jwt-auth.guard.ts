import { ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import { AuthGuard } from '@nestjs/passport';
import { AuthUser, IS_PUBLIC } from './auth-user.js';
import { SessionStore } from './session-store.service.js';
import { AuthError } from './auth.errors.js';

/**
 * Every route needs a bearer token unless marked @Public(): a valid signature (passport-jwt) and
 * an open server-side session. The session is checked here, not in the passport strategy:
 * passport keeps one strategy per name for the whole process, while this guard belongs to its app.
 */
@Injectable()
export class JwtAuthGuard extends AuthGuard('jwt') {
  private readonly checkSessions: boolean;

  constructor(
    private readonly reflector: Reflector,
    private readonly sessions: SessionStore,
    config: ConfigService<AppConfig, true>,
  ) {
    super();
    this.checkSessions = !config.get('benchSkipSessionCheck', { infer: true });
  }

  override async canActivate(context: ExecutionContext): Promise<boolean> {
    const isPublic = this.reflector.getAllAndOverride<boolean | undefined>(IS_PUBLIC, [context.getHandler(), context.getClass()]);
    if (isPublic) return true;
    await super.canActivate(context);
    if (!this.checkSessions) return true;
    const user = context.switchToHttp().getRequest<{ user: AuthUser }>().user;
    const active = this.sessions.isActive(user.sessionId, user.id);
    if (!(active instanceof Promise ? await active : active)) {
      throw new AuthError('UNAUTHENTICATED', 'this session has ended (signed out, revoked or expired); sign in again');
    }
    return true;
  }

  override handleRequest<T>(err: unknown, user: T): T {
    if (err || !user) throw new AuthError('UNAUTHENTICATED', 'a valid bearer token is required (Authorization: Bearer <token>)');
    return user;
  }
}
