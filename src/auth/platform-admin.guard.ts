import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { AuthUser } from './auth-user.js';
import { AuthError } from './auth.errors.js';

/** Platform admins are listed in configuration (PLATFORM_ADMIN_EMAILS); only they manage tenants. */
@Injectable()
export class PlatformAdminGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const user = context.switchToHttp().getRequest<{ user?: AuthUser }>().user;
    if (!user?.platformAdmin) throw new AuthError('PLATFORM_ADMIN_REQUIRED', 'only platform admins may do this');
    return true;
  }
}
