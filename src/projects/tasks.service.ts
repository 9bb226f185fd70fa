import { Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import { AuditService } from '../audit/audit.service.js';
import { PlanLimits } from '../billing/plan-limits.js';
import { ValidationFailed } from '../http/domain-error.js';
import { TenantConnectionProvider } from '../tenancy/tenant-connection.provider.js';
import type { CreateTaskDto, ListTasksQuery, UpdateTaskDto } from './dto/project.dto.js';
import { Project } from './entities/project.entity.js';
import { Task } from './entities/task.entity.js';
import { ProjectsError } from './projects.errors.js';
import { projectNotFound } from './projects.service.js';

const COLUMNS = 'id, project_id, title, status, created_at, updated_at';

interface TaskRow {
  id: string;
  project_id: string;
  title: string;
  status: Task['status'];
  created_at: Date;
  updated_at: Date;
}

const fromRow = (r: TaskRow): Task =>
  Object.assign(new Task(), {
    id: r.id,
    projectId: r.project_id,
    title: r.title,
    status: r.status,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  });

const taskNotFound = (id: string) => new ProjectsError('TASK_NOT_FOUND', `task ${id} was not found`, 'taskId');

@Injectable()
export class TasksService {
  constructor(
    private readonly tenant: TenantConnectionProvider,
    private readonly audit: AuditService,
    private readonly limits: PlanLimits,
  ) {}

  async list(projectId: string, q: ListTasksQuery): Promise<Task[]> {
    await this.assertProject(projectId);
    const qb = this.tenant.manager
      .getRepository(Task)
      .createQueryBuilder('t')
      .where('t.project_id = :projectId', { projectId })
      .orderBy('t.id', 'DESC')
      .limit(q.limit);
    if (q.cursor) qb.andWhere('t.id < :cursor', { cursor: q.cursor });
    if (q.status) qb.andWhere('t.status = :status', { status: q.status });
    return qb.getMany();
  }

  async get(projectId: string, id: string): Promise<Task> {
    const t = await this.tenant.manager.findOneBy(Task, { id, projectId });
    if (!t) {
      await this.assertProject(projectId);
      throw taskNotFound(id);
    }
    return t;
  }

  async create(projectId: string, dto: CreateTaskDto): Promise<Task> {
    await this.assertProject(projectId);
    const manager = this.tenant.manager;
    await this.limits.admit(this.tenant.tenant.id, 'tasks_per_project', manager, () => manager.countBy(Task, { projectId }), projectId);
    const { raw } = await manager
      .createQueryBuilder()
      .insert()
      .into(Task)
      .values({ id: uuidv7(), projectId, title: dto.title, status: dto.status ?? 'todo' })
      .returning(COLUMNS)
      .execute();
    const task = fromRow((raw as TaskRow[])[0]);
    await this.audit.record({ action: 'task.created', targetType: 'task', targetId: task.id, metadata: { projectId } });
    return task;
  }

  async update(projectId: string, id: string, dto: UpdateTaskDto): Promise<Task> {
    if (dto.title === undefined && dto.status === undefined) {
      throw new ValidationFailed('body', 'send at least one of: title, status');
    }
    const { raw } = await this.tenant.manager
      .createQueryBuilder()
      .update(Task)
      .set({ ...dto, updatedAt: () => 'clock_timestamp()' })
      .where('id = :id AND project_id = :projectId', { id, projectId })
      .returning(COLUMNS)
      .execute();
    const rows = raw as TaskRow[];
    if (!rows.length) {
      await this.assertProject(projectId);
      throw taskNotFound(id);
    }
    await this.audit.record({ action: 'task.updated', targetType: 'task', targetId: id, metadata: { projectId, fields: Object.keys(dto).sort() } });
    return fromRow(rows[0]);
  }

  async remove(projectId: string, id: string): Promise<void> {
    const { affected } = await this.tenant.manager.delete(Task, { id, projectId });
    if (!affected) {
      await this.assertProject(projectId);
      throw taskNotFound(id);
    }
    await this.audit.record({ action: 'task.deleted', targetType: 'task', targetId: id, metadata: { projectId } });
  }

  private async assertProject(projectId: string): Promise<void> {
    if (!(await this.tenant.manager.existsBy(Project, { id: projectId }))) throw projectNotFound(projectId);
  }
}
