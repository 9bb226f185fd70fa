import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiBadRequestResponse, ApiCreatedResponse, ApiForbiddenResponse, ApiNoContentResponse, ApiNotFoundResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { nextCursor, PageQuery } from '../http/page.dto.js';
import { UuidPipe } from '../http/validation.js';
import { TenantScoped } from '../tenancy/tenant-scoped.decorator.js';
import { CreateProjectDto, ProjectDto, ProjectPageDto, UpdateProjectDto } from './dto/project.dto.js';
import { ProjectsService } from './projects.service.js';

@ApiTags('projects')
@ApiBadRequestResponse({ type: ErrorBodyDto })
@TenantScoped()
@Controller('orgs/:slug/projects')
export class ProjectsController {
  constructor(private readonly projects: ProjectsService) {}

  @Post()
  @ApiCreatedResponse({ type: ProjectDto })
  @ApiForbiddenResponse({
    type: ErrorBodyDto,
    description: "PLAN_LIMIT_REACHED: the plan's projects are all used (feature, limit and usage say so); or the tenant is suspended, or the role may not do this",
  })
  async create(@Body() dto: CreateProjectDto): Promise<ProjectDto> {
    return ProjectDto.from(await this.projects.create(dto));
  }

  @Get()
  @ApiOkResponse({ type: ProjectPageDto })
  async list(@Query() q: PageQuery): Promise<ProjectPageDto> {
    const items = await this.projects.list(q.limit, q.cursor);
    return { items: items.map(ProjectDto.from), nextCursor: nextCursor(items, q.limit) };
  }

  @Get(':projectId')
  @ApiOkResponse({ type: ProjectDto })
  @ApiNotFoundResponse({ type: ErrorBodyDto })
  async get(@Param('projectId', UuidPipe) id: string): Promise<ProjectDto> {
    return ProjectDto.from(await this.projects.get(id));
  }

  @Patch(':projectId')
  @ApiOkResponse({ type: ProjectDto })
  @ApiNotFoundResponse({ type: ErrorBodyDto })
  async update(@Param('projectId', UuidPipe) id: string, @Body() dto: UpdateProjectDto): Promise<ProjectDto> {
    return ProjectDto.from(await this.projects.update(id, dto));
  }

  @Delete(':projectId')
  @HttpCode(204)
  @ApiNoContentResponse({ description: 'Deleted with its tasks' })
  @ApiNotFoundResponse({ type: ErrorBodyDto })
  remove(@Param('projectId', UuidPipe) id: string): Promise<void> {
    return this.projects.remove(id);
  }
}
