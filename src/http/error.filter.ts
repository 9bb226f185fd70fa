import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import pg from 'pg';
import { QueryFailedError } from 'typeorm';
import { PoolCapacityError } from '../../libs/postgres/index.js';
import type { AuthErrorCode } from '../auth/auth.errors.js';
import type { BillingErrorCode } from '../billing/billing.errors.js';
import type { LifecycleErrorCode } from '../lifecycle/lifecycle.errors.js';
import type { OrganizationsErrorCode } from '../organizations/organizations.errors.js';
import type { ProjectsErrorCode } from '../projects/projects.errors.js';
import type { SsoErrorCode } from '../sso/sso.errors.js';
import type { SupportErrorCode } from '../support/support.errors.js';
import type { TenancyErrorCode } from '../tenancy/tenancy.errors.js';
import { DomainError, ErrorDetails, HttpErrorCode } from './domain-error.js';

export type ErrorCode =
  | HttpErrorCode
  | AuthErrorCode
  | TenancyErrorCode
  | OrganizationsErrorCode
  | ProjectsErrorCode
  | LifecycleErrorCode
  | SsoErrorCode
  | SupportErrorCode
  | BillingErrorCode;

/** The one place codes become statuses; the compiler checks that every code has one. */
export function statusFor(code: ErrorCode): number {
  switch (code) {
    case 'VALIDATION_FAILED':
    case 'MALFORMED_BODY':
    case 'MALFORMED_URL':
    case 'TENANT_REQUIRED':
    case 'TENANT_MISMATCH':
    case 'SERVER_NOT_FOUND':
    case 'TIER_NOT_ALLOWED':
    case 'MOVE_SAME_PLACEMENT':
    case 'SSO_STATE_INVALID':
    case 'SSO_CODE_INVALID':
    case 'WEBHOOK_SIGNATURE_INVALID':
    case 'BILLING_WEBHOOK_INVALID':
    case 'PLAN_NOT_FOUND':
      return 400;
    case 'UNAUTHENTICATED':
      return 401;
    case 'PAYMENT_REQUIRED':
      return 402;
    case 'FORBIDDEN':
    case 'PLATFORM_ADMIN_REQUIRED':
    case 'TENANT_SUSPENDED':
    case 'ROLE_FORBIDDEN':
    case 'OWNER_ROLE_RESTRICTED':
    case 'READ_ONLY':
    case 'TENANT_PENDING_DELETION':
    case 'SSO_REQUIRED':
    case 'SSO_ORGANIZATION_MISMATCH':
    case 'SSO_EMAIL_DOMAIN_NOT_ALLOWED':
    case 'SSO_IDP_INITIATED_NOT_ALLOWED':
    case 'SSO_USER_DEPROVISIONED':
    case 'SUPPORT_STAFF_REQUIRED':
    case 'SUPPORT_SELF_APPROVAL':
    case 'SUPPORT_APPROVER_MISMATCH':
    case 'PLAN_LIMIT_REACHED':
    case 'PLAN_TIER_NOT_ALLOWED':
      return 403;
    case 'ROUTE_NOT_FOUND':
    case 'TENANT_NOT_FOUND':
    case 'MEMBER_NOT_FOUND':
    case 'PROJECT_NOT_FOUND':
    case 'TASK_NOT_FOUND':
    case 'MOVE_NOT_FOUND':
    case 'PURGE_RECEIPT_NOT_FOUND':
    case 'SSO_NOT_LINKED':
    case 'SSO_DOMAIN_NOT_FOUND':
    case 'SUPPORT_GRANT_NOT_FOUND':
      return 404;
    case 'CONFLICT':
    case 'TENANT_SLUG_TAKEN':
    case 'MEMBER_EXISTS':
    case 'LAST_OWNER':
    case 'TENANT_STATE_CONFLICT':
    case 'PURGE_NOT_DUE':
    case 'MOVE_IN_PROGRESS':
    case 'MOVE_STATE_CONFLICT':
    case 'MIGRATION_VERSION_MISMATCH':
    case 'SSO_ALREADY_LINKED':
    case 'SSO_CONNECTION_INACTIVE':
    case 'SUPPORT_GRANT_STATE_CONFLICT':
      return 409;
    case 'PAYLOAD_TOO_LARGE':
      return 413;
    case 'URI_TOO_LONG':
      return 414;
    case 'TOO_MANY_REQUESTS':
    case 'RATE_LIMITED':
    case 'TENANT_BUSY':
      return 429;
    case 'UNSUPPORTED_MEDIA_TYPE':
      return 415;
    case 'TENANT_UNAVAILABLE':
    case 'PROVISIONING_FAILED':
    case 'DATABASE_BUSY':
    case 'TENANT_WRITE_FROZEN':
    case 'TENANT_MOVED':
    case 'SSO_NOT_CONFIGURED':
    case 'SSO_PROVIDER_ERROR':
    case 'QUERY_TIMEOUT':
    case 'BILLING_NOT_CONFIGURED':
      return 503;
    case 'TENANT_CONTEXT_MISSING':
    case 'INTERNAL':
      return 500;
    default: {
      const unreachable: never = code;
      return unreachable;
    }
  }
}

export interface ErrorBody {
  status: number;
  code: ErrorCode;
  message: string;
  field?: string;
  requestId: string;
  feature?: string;
  limit?: number;
  usage?: number;
}

interface Mapped {
  code: ErrorCode;
  message: string;
  field?: string;
  headers?: Record<string, string>;
  status?: number;
  details?: ErrorDetails;
}

const PG_CODES: Record<string, Mapped> = {
  '23505': { code: 'CONFLICT', message: 'a record with the same key already exists' },
  '23503': { code: 'CONFLICT', message: 'the record refers to, or is referred to by, a record that does not exist' },
  '23514': { code: 'VALIDATION_FAILED', message: 'a value is outside its allowed range' },
  '22001': { code: 'VALIDATION_FAILED', message: 'a value is too long' },
  '22P02': { code: 'VALIDATION_FAILED', message: 'a value has the wrong format' },
  '25006': { code: 'READ_ONLY', message: 'this request may only read data' },
  '40001': { code: 'DATABASE_BUSY', message: 'the change collided with another one; retry it', headers: { 'retry-after': '1' } },
  '40P01': { code: 'DATABASE_BUSY', message: 'the change collided with another one; retry it', headers: { 'retry-after': '1' } },
  '53300': { code: 'DATABASE_BUSY', message: 'the database has no free connections; retry shortly', headers: { 'retry-after': '1' } },
  '57P01': { code: 'DATABASE_BUSY', message: 'the database connection was closed; retry shortly', headers: { 'retry-after': '1' } },
  // A cancelled query: a tenant's plan timeout is explained by the tenant transaction interceptor; this covers the rest.
  '57014': { code: 'QUERY_TIMEOUT', message: 'the query was cancelled before it finished (it ran too long); retry shortly', headers: { 'retry-after': '1' } },
  // Raised by tenant_write_gate() (migrations/tenant/0002_write_gate.sql) during a move's cutover.
  TNF01: {
    code: 'TENANT_WRITE_FROZEN',
    message: 'writes to this tenant are paused for a few seconds while it moves; reads keep working; retry shortly',
    headers: { 'retry-after': '2' },
  },
  TNM01: { code: 'TENANT_MOVED', message: 'this tenant has just moved to another placement; retry', headers: { 'retry-after': '1' } },
};

const CONNECTION_FAILURE =
  /Connection terminated|not queryable|Client was closed|ECONNREFUSED|ECONNRESET|EPIPE|timeout exceeded when trying to connect/;

/** A lost or unreachable database connection (SQLSTATE class 08 / 57P0x, or a socket error from pg). */
function isConnectionFailure(e: unknown): boolean {
  const err = (e instanceof QueryFailedError ? e.driverError : e) as { code?: unknown; message?: unknown } | null;
  if (!err) return false;
  const code = typeof err.code === 'string' ? err.code : '';
  return code.startsWith('08') || code.startsWith('57P0') || CONNECTION_FAILURE.test(String(err.message ?? '')) || ['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(code);
}

/** The SQLSTATE of a query error, raised through TypeORM or straight from pg (a tenant transaction's prologue). */
function sqlState(e: unknown): string | undefined {
  if (e instanceof QueryFailedError) return (e.driverError as { code?: string } | undefined)?.code;
  if (e instanceof pg.DatabaseError) return e.code;
  return undefined;
}

function fromHttpException(e: HttpException): Mapped {
  const status = e.getStatus();
  if (status === 404) return { code: 'ROUTE_NOT_FOUND', message: 'no such route', status };
  if (status === 413) return { code: 'PAYLOAD_TOO_LARGE', message: 'the request body is too large', status };
  if (status === 415) return { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'send the body as application/json', status };
  if (status === 401) return { code: 'UNAUTHENTICATED', message: 'a valid bearer token is required', status };
  if (status === 403) return { code: 'FORBIDDEN', message: 'this request is not allowed', status };
  if (status === 429) return { code: 'TOO_MANY_REQUESTS', message: 'too many requests; retry later', status };
  if (status < 500) return { code: 'MALFORMED_BODY', message: e.message, status };
  return { code: 'INTERNAL', message: 'internal error', status: 500 };
}

/** Errors raised by Fastify itself (body parsing and the like) carry a statusCode. */
function fromFramework(e: { statusCode: number; code?: string; message: string }): Mapped {
  if (e.statusCode === 413) return { code: 'PAYLOAD_TOO_LARGE', message: 'the request body is too large', status: 413 };
  if (e.statusCode === 415) return { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'send the body as application/json', status: 415 };
  if (e.statusCode === 404) return { code: 'ROUTE_NOT_FOUND', message: 'no such route', status: 404 };
  return { code: 'MALFORMED_BODY', message: 'the request body is not valid JSON', status: 400 };
}

export function mapError(exception: unknown): Mapped {
  if (exception instanceof DomainError) {
    return { code: exception.code as ErrorCode, message: exception.message, field: exception.field, headers: exception.headers, details: exception.details };
  }
  if (exception instanceof HttpException) return fromHttpException(exception);
  if (exception instanceof PoolCapacityError) {
    return { code: 'DATABASE_BUSY', message: 'all database connections are busy; retry shortly', headers: { 'retry-after': '1' } };
  }
  const pgCode = sqlState(exception);
  if (pgCode && PG_CODES[pgCode]) return PG_CODES[pgCode];
  if (isConnectionFailure(exception)) {
    return { code: 'DATABASE_BUSY', message: 'the database connection was lost; retry shortly', headers: { 'retry-after': '1' } };
  }
  const maybe = exception as { statusCode?: unknown; message?: string; code?: string } | null;
  if (maybe && typeof maybe.statusCode === 'number' && maybe.statusCode >= 400 && maybe.statusCode < 500) {
    return fromFramework({ statusCode: maybe.statusCode, code: maybe.code, message: maybe.message ?? '' });
  }
  return { code: 'INTERNAL', message: 'internal error; the request id identifies it in the logs' };
}

/** What may be logged of an error: never a query's parameters or rows (QueryFailedError carries both). */
function loggable(e: unknown): Record<string, unknown> {
  if (!(e instanceof Error)) return { type: typeof e };
  const driver = e instanceof QueryFailedError ? (e.driverError as { code?: string; routine?: string }) : undefined;
  return { type: e.name, message: e.message, code: driver?.code ?? (e as { code?: unknown }).code, stack: e.stack };
}

/** Fastify answers some requests before Nest sees them (a malformed URL, an over-long path parameter): same shape. */
export function frameworkErrorBody(error: { statusCode?: number }, requestId: string): ErrorBody {
  const status = error.statusCode === 414 ? 414 : 400;
  return status === 414
    ? { status, code: 'URI_TOO_LONG', message: 'a path segment is too long', requestId }
    : { status, code: 'MALFORMED_URL', message: 'the URL is malformed (check its percent-escapes)', requestId };
}

/** 503s that are part of normal operation (a busy database, a move's cutover): warnings, not errors. */
const EXPECTED_UNAVAILABLE = new Set<ErrorCode>(['DATABASE_BUSY', 'TENANT_WRITE_FROZEN', 'TENANT_MOVED', 'TENANT_UNAVAILABLE', 'SSO_NOT_CONFIGURED', 'SSO_PROVIDER_ERROR', 'BILLING_NOT_CONFIGURED', 'QUERY_TIMEOUT']);

@Catch()
export class ErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('ErrorFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const request = ctx.getRequest<FastifyRequest>();
    const reply = ctx.getResponse<FastifyReply>();
    const mapped = mapError(exception);
    const status = mapped.status ?? statusFor(mapped.code);
    if (status >= 500) {
      const entry = { err: loggable(exception), requestId: request.id, tenantId: (request.raw as { tenantId?: string }).tenantId };
      if (EXPECTED_UNAVAILABLE.has(mapped.code)) this.logger.warn({ ...entry, code: mapped.code }, 'temporarily unavailable');
      else this.logger.error(entry, 'request failed');
    }
    const body: ErrorBody = { status, code: mapped.code, message: mapped.message, requestId: String(request.id) };
    if (mapped.field) body.field = mapped.field;
    if (mapped.details) Object.assign(body, mapped.details);
    if (mapped.headers) reply.headers(mapped.headers);
    reply.status(status).send(body);
  }
}
