import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder holding package.json, found upwards from this file (works from src and from dist). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = resolve(dir, '..');
    if (up === dir) throw new Error('cannot find the project root (no package.json above config/)');
    dir = up;
  }
  return dir;
}

export function fromRoot(...parts: string[]): string {
  return join(projectRoot(), ...parts);
}
