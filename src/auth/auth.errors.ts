import { DomainError } from '../http/domain-error.js';

export type AuthErrorCode = 'UNAUTHENTICATED' | 'PLATFORM_ADMIN_REQUIRED' | 'SSO_REQUIRED';

export class AuthError extends DomainError<AuthErrorCode> {}
