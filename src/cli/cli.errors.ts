/** Bad usage (exit code 2): the command line itself is wrong, nothing was touched. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** An expected failure (exit code 1) whose message says what to do; no stack trace is shown. */
export class CliFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliFailure';
  }
}

/** PostgreSQL's undefined_table: the control plane was never migrated on this database. */
export function explainMissingControlPlane(err: unknown): never {
  if ((err as { code?: string }).code === '42P01') {
    throw new CliFailure('the control plane has no tables on this database yet: run `npm run cli -- migrate` first');
  }
  throw err;
}
