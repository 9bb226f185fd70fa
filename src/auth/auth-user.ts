import { createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';

/** The authenticated caller, as the JWT strategy puts it on the request. */
export interface AuthUser {
  id: string;
  email: string;
  platformAdmin: boolean;
  /** Platform support staff (SUPPORT_STAFF_EMAILS): may request support grants; never through SSO. */
  support: boolean;
  /** The server-side session the token names (see SessionStore). */
  sessionId: string;
}

export const CurrentUser = createParamDecorator((_: unknown, ctx: ExecutionContext): AuthUser => {
  return ctx.switchToHttp().getRequest<{ user: AuthUser }>().user;
});

export const IS_PUBLIC = 'auth:public';
/** A route that needs no token (login, health, docs). */
export const Public = () => SetMetadata(IS_PUBLIC, true);
