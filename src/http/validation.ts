import { ArgumentMetadata, Injectable, PipeTransform, ValidationError, ValidationPipe } from '@nestjs/common';
import { isUuid } from '../../libs/postgres/index.js';
import { ValidationFailed } from './domain-error.js';

function firstProblem(errors: ValidationError[], prefix = ''): { field: string; reason: string } {
  const e = errors[0];
  const field = prefix ? `${prefix}.${e.property}` : e.property;
  if (e.constraints && Object.keys(e.constraints).length > 0) {
    // Prefer the "unknown property" message over type noise when a body has extra fields.
    const c = e.constraints;
    const reason = c.whitelistValidation ?? Object.values(c)[0];
    return { field, reason: c.whitelistValidation ? `property ${field} is not allowed` : reason };
  }
  if (e.children && e.children.length > 0) return firstProblem(e.children, field);
  return { field, reason: `${field} is invalid` };
}

/** Every input goes through class-validator; the first problem becomes a 400 naming the field. */
export function createValidationPipe(): ValidationPipe {
  return new ValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    stopAtFirstError: true,
    exceptionFactory: (errors) => {
      const { field, reason } = firstProblem(errors);
      return new ValidationFailed(field, reason);
    },
  });
}

/** A path parameter that must be a UUID; anything else is a 400 naming the parameter. */
@Injectable()
export class UuidPipe implements PipeTransform<string, string> {
  transform(value: string, meta: ArgumentMetadata): string {
    const field = meta.data ?? 'id';
    if (!isUuid(value)) throw new ValidationFailed(field, `${field} must be a UUID`);
    return value;
  }
}
