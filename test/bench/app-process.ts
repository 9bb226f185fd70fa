import { ChildProcess, spawn } from 'node:child_process';
import type pg from 'pg';
import { fromRoot } from '../../config/paths.js';

/** The real app (compiled) as a child process, ready once /health/live answers. */
export async function startApp(port: number, env: Record<string, string>, nodeFlags: string[] = []): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...nodeFlags, fromRoot('dist', 'src', 'main.js')], {
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += String(d)));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`app exited: ${stderr}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health/live`);
      if (res.ok) return child;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`app did not start: ${stderr}`);
}

export async function stopApp(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

/**
 * A session token without a sign-in (production mode has no development login): a session row
 * written with `db` (a superuser or owner connection to the control database) and a token naming
 * it, signed with the app's secret.
 */
export async function mintSession(db: pg.Client, secret: string, userId: string, email: string): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO control.sessions (id, user_id, method, expires_at) VALUES (gen_random_uuid(), $1, 'dev', now() + interval '1 hour') RETURNING id`,
    [userId],
  );
  const { JwtService } = await import('@nestjs/jwt');
  return new JwtService({ secret }).signAsync(
    { sub: userId, email, sid: rows[0].id, amr: 'dev' },
    { issuer: 'tenancy-platform', expiresIn: 3600, algorithm: 'HS256' },
  );
}
