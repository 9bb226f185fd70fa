import { Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import { AuditService } from '../audit/audit.service.js';
import { PlanLimits } from '../billing/plan-limits.js';
import { ValidationFailed } from '../http/domain-error.js';
import { TenantConnectionProvider } from '../tenancy/tenant-connection.provider.js';
import type { CreateProjectDto, UpdateProjectDto } from './dto/project.dto.js';
import { Project } from './entities/project.entity.js';
import { ProjectsError } from './projects.errors.js';
import { listProjects } from './projects.queries.js';

const COLUMNS = 'id, name, description, created_at, updated_at';

interface ProjectRow {
  id: string;
  name: string;
  description: string | null;
  created_at: Date;
  updated_at: Date;
}

const fromRow = (r: ProjectRow): Project =>
  Object.assign(new Project(), { id: r.id, name: r.name, description: r.description, createdAt: r.created_at, updatedAt: r.updated_at });

export function projectNotFound(id: string): ProjectsError {
  return new ProjectsError('PROJECT_NOT_FOUND', `project ${id} was not found`, 'projectId');
}

/** Example tenant-owned domain: it never mentions the tenant; the provider's manager is already confined. */
@Injectable()
export class ProjectsService {
  constructor(
    private readonly tenant: TenantConnectionProvider,
    private readonly audit: AuditService,
    private readonly limits: PlanLimits,
  ) {}

  list(limit: number, cursor?: string): Promise<Project[]> {
    return listProjects(this.tenant.manager, { limit, cursor });
  }

  async get(id: string): Promise<Project> {
    const p = await this.tenant.manager.findOneBy(Project, { id });
    if (!p) throw projectNotFound(id);
    return p;
  }

  async create(dto: CreateProjectDto): Promise<Project> {
    const manager = this.tenant.manager;
    await this.limits.admit(this.tenant.tenant.id, 'projects', manager, () => manager.count(Project));
    const { raw } = await manager
      .createQueryBuilder()
      .insert()
      .into(Project)
      .values({ id: uuidv7(), name: dto.name, description: dto.description ?? null })
      .returning(COLUMNS)
      .execute();
    const project = fromRow((raw as ProjectRow[])[0]);
    await this.audit.record({ action: 'project.created', targetType: 'project', targetId: project.id });
    return project;
  }

  async update(id: string, dto: UpdateProjectDto): Promise<Project> {
    if (dto.name === undefined && dto.description === undefined) {
      throw new ValidationFailed('body', 'send at least one of: name, description');
    }
    const { raw } = await this.tenant.manager
      .createQueryBuilder()
      .update(Project)
      .set({ ...dto, updatedAt: () => 'clock_timestamp()' })
      .where('id = :id', { id })
      .returning(COLUMNS)
      .execute();
    const rows = raw as ProjectRow[];
    if (!rows.length) throw projectNotFound(id);
    await this.audit.record({ action: 'project.updated', targetType: 'project', targetId: id, metadata: { fields: Object.keys(dto).sort() } });
    return fromRow(rows[0]);
  }

  async remove(id: string): Promise<void> {
    const { affected } = await this.tenant.manager.delete(Project, { id });
    if (!affected) throw projectNotFound(id);
    await this.audit.record({ action: 'project.deleted', targetType: 'project', targetId: id });
  }
}
