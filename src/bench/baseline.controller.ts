import { Controller, Get, Inject, OnApplicationShutdown, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiExcludeController } from '@nestjs/swagger';
import { IsUUID } from 'class-validator';
import { DataSource } from 'typeorm';
import { nextCursor, PageQuery } from '../http/page.dto.js';
import { ProjectDto, ProjectPageDto } from '../projects/dto/project.dto.js';
import { listProjects } from '../projects/projects.queries.js';

export const BASELINE_DATA_SOURCE = Symbol('BASELINE_DATA_SOURCE');

class BaselineQuery extends PageQuery {
  @IsUUID('all')
  org!: string;
}

/**
 * Benchmark baseline only (registered when BENCH_BASELINE_DATABASE_URL is set): the same list
 * endpoint with no tenancy at all: same auth, validation and mapping, but one plain query with an
 * explicit WHERE on a role that bypasses RLS, no transaction, no routing.
 */
@ApiExcludeController()
@ApiBearerAuth()
@Controller('bench/baseline')
export class BaselineController implements OnApplicationShutdown {
  constructor(@Inject(BASELINE_DATA_SOURCE) private readonly ds: DataSource) {}

  async onApplicationShutdown(): Promise<void> {
    await this.ds.destroy().catch(() => undefined);
  }

  @Get('projects')
  async list(@Query() q: BaselineQuery): Promise<ProjectPageDto> {
    const items = await listProjects(this.ds.manager, { limit: q.limit, cursor: q.cursor, organizationId: q.org });
    return { items: items.map(ProjectDto.from), nextCursor: nextCursor(items, q.limit) };
  }
}
