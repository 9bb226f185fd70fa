import { ArgumentMetadata, Injectable, PipeTransform, ValidationError, ValidationPipe } from '@nestjs/common';
import { ValidateBy, ValidationArguments } from 'class-validator';
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

// class-transformer recurses once per level and overflows the stack near 2,000; no DTO here nests at all.
const MAX_BODY_DEPTH = 32;
// The types ValidationPipe leaves alone (a body declared as one of these is not a DTO).
const NOT_DTOS = new Set<unknown>([String, Boolean, Number, Array, Object, Buffer, Date]);

/** The top-level key under which a value nests deeper than max levels (walked without recursion). */
function tooDeep(body: object, max: number): string | undefined {
  for (const [key, value] of Object.entries(body)) {
    const stack: Array<[unknown, number]> = [[value, 1]];
    while (stack.length > 0) {
      const [v, depth] = stack.pop()!;
      if (v === null || typeof v !== 'object') continue;
      if (depth >= max) return key;
      for (const child of Object.values(v)) stack.push([child, depth + 1]);
    }
  }
  return undefined;
}

/** Checks what class-validator cannot see before it runs: a DTO body is one JSON object of bounded depth. */
class AppValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    if (metadata.type === 'body' && metadata.metatype && !NOT_DTOS.has(metadata.metatype) && value !== undefined) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new ValidationFailed('body', 'the request body must be a JSON object');
      }
      const key = tooDeep(value, MAX_BODY_DEPTH);
      if (key !== undefined) throw new ValidationFailed(key, `${key} is nested too deeply`);
    }
    return super.transform(value, metadata);
  }
}

/** Every input goes through class-validator; the first problem becomes a 400 naming the field. */
export function createValidationPipe(): ValidationPipe {
  return new AppValidationPipe({
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

/** Code points in s, counting no further than limit. */
function codePoints(s: string, limit: number): number {
  let n = 0;
  for (const _ of s) if (++n > limit) break;
  return n;
}

/**
 * Text a PostgreSQL text column accepts under its length CHECK: no NUL (text cannot hold it, the
 * insert fails) and the length in code points, as length() counts them; class-validator's Length
 * does not count variation selectors, so it lets through what the CHECK refuses.
 */
export function IsStorableText(min: number, max: number): PropertyDecorator {
  return ValidateBy({
    name: 'isStorableText',
    constraints: [min, max],
    validator: {
      validate: (value: unknown) => {
        if (typeof value !== 'string' || value.includes('\u0000')) return false;
        const n = codePoints(value, max);
        return n >= min && n <= max;
      },
      defaultMessage: (args?: ValidationArguments) => {
        const field = args?.property ?? 'value';
        if (typeof args?.value !== 'string') return `${field} must be a string`;
        if (args.value.includes('\u0000')) return `${field} must not contain NUL characters`;
        return min > 0 ? `${field} must be ${min} to ${max} characters long` : `${field} must be at most ${max} characters long`;
      },
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
