import { DomainError } from '../http/domain-error.js';

export type OrganizationsErrorCode = 'MEMBER_NOT_FOUND' | 'MEMBER_EXISTS' | 'LAST_OWNER' | 'OWNER_ROLE_RESTRICTED';

export class OrganizationsError extends DomainError<OrganizationsErrorCode> {}
