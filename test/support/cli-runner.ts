import { spawn } from 'node:child_process';
import { fromRoot } from '../../config/paths.js';
import type { HarnessInfo } from '../../libs/testing/index.js';
import { ownerUrl } from '../../libs/testing/index.js';

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd: string;
  env: Record<string, string>;
  timeoutMs?: number;
}

/** The environment that points the CLI at a test database (as an operator's .env would). */
export function cliEnv(harness: HarnessInfo, database: string, jwtSecret: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATABASE_URL: ownerUrl(harness, harness.primaryPort, database),
    DATABASE_SECONDARY_URL: ownerUrl(harness, harness.secondaryPort, 'postgres'),
    DATABASE_APP_USER: harness.appUser,
    DATABASE_APP_PASSWORD: harness.appPassword,
    JWT_SECRET: jwtSecret,
    DB_POOL_MAX: '4',
    ...extra,
  };
}

/** The compiled CLI in a child process, as an operator runs it; rejects if it does not exit by itself in time. */
export function runCli(options: CliOptions, ...args: string[]): Promise<CliRun> {
  const timeoutMs = options.timeoutMs ?? 50_000;
  return new Promise((resolve, reject) => {
    const child = spawn(fromRoot('node_modules', '.bin', 'node'), [fromRoot('dist', 'src', 'cli.js'), ...args], {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`'cli ${args.join(' ')}' did not exit within ${timeoutMs / 1000} s\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The body rows of a cli-table3 table, as trimmed cells. */
export function tableRows(stdout: string): string[][] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('│'))
    .map((line) =>
      line
        .split('│')
        .slice(1, -1)
        .map((cell) => cell.trim()),
    );
}
