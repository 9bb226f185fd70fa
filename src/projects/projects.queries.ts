import type { EntityManager } from 'typeorm';
import { Project } from './entities/project.entity.js';

export interface ListProjects {
  limit: number;
  cursor?: string;
  /** Only for the no-tenancy baseline route: tenant code never filters by tenant by hand. */
  organizationId?: string;
}

/** Newest first, keyset on the time-ordered id. */
export function listProjects(manager: EntityManager, q: ListProjects): Promise<Project[]> {
  const qb = manager.getRepository(Project).createQueryBuilder('p').orderBy('p.id', 'DESC').limit(q.limit);
  if (q.organizationId) qb.andWhere('p.organization_id = :org', { org: q.organizationId });
  if (q.cursor) qb.andWhere('p.id < :cursor', { cursor: q.cursor });
  return qb.getMany();
}
