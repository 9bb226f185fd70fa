/**
 * Base of every module's error class. Services throw these (never HttpException); the one
 * filter in src/http turns the code into a status.
 */
export abstract class DomainError<C extends string = string> extends Error {
  constructor(
    readonly code: C,
    message: string,
    readonly field?: string,
    readonly headers?: Record<string, string>,
    /** Machine-readable facts added to the error body (a plan limit and the usage against it, say). */
    readonly details?: ErrorDetails,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** What an error body may carry beyond its message: see ErrorBodyDto. */
export interface ErrorDetails {
  feature?: string;
  limit?: number;
  usage?: number;
}

export type HttpErrorCode =
  | 'VALIDATION_FAILED'
  | 'MALFORMED_BODY'
  | 'MALFORMED_URL'
  | 'URI_TOO_LONG'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'ROUTE_NOT_FOUND'
  | 'FORBIDDEN'
  | 'TOO_MANY_REQUESTS'
  | 'CONFLICT'
  | 'READ_ONLY'
  | 'DATABASE_BUSY'
  | 'INTERNAL';

export class HttpError extends DomainError<HttpErrorCode> {}

export class ValidationFailed extends HttpError {
  constructor(field: string, reason: string) {
    super('VALIDATION_FAILED', reason, field);
  }
}
