import { userInfo } from 'node:os';
import type { PlatformActorKind } from './platform-audit.js';

/** Who asks for a lifecycle change, as the platform audit log records it. */
export interface Actor {
  kind: PlatformActorKind;
  /** A user id for platform admins, the OS user for operators, the job for the system. */
  id: string | null;
  requestId?: string;
}

/** The sweeper of every app instance, when it purges a tenant whose grace period is over. */
export const SWEEPER_ACTOR: Actor = { kind: 'system', id: 'lifecycle-sweeper' };

/** The operator running the CLI: the OS user name (some containers have no passwd entry: then the uid). */
export function operatorActor(): Actor {
  try {
    return { kind: 'operator', id: userInfo().username };
  } catch {
    return { kind: 'operator', id: `uid:${process.getuid?.() ?? 'unknown'}` };
  }
}
