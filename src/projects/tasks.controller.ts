import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiBadRequestResponse, ApiCreatedResponse, ApiForbiddenResponse, ApiNoContentResponse, ApiNotFoundResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { nextCursor } from '../http/page.dto.js';
import { UuidPipe } from '../http/validation.js';
import { TenantScoped } from '../tenancy/tenant-scoped.decorator.js';
import { CreateTaskDto, ListTasksQuery, TaskDto, TaskPageDto, UpdateTaskDto } from './dto/project.dto.js';
import { TasksService } from './tasks.service.js';

@ApiTags('tasks')
@ApiBadRequestResponse({ type: ErrorBodyDto })
@ApiNotFoundResponse({ type: ErrorBodyDto, description: 'No such project or task in this tenant' })
@TenantScoped()
@Controller('orgs/:slug/projects/:projectId/tasks')
export class TasksController {
  constructor(private readonly tasks: TasksService) {}

  @Post()
  @ApiCreatedResponse({ type: TaskDto })
  @ApiForbiddenResponse({
    type: ErrorBodyDto,
    description: "PLAN_LIMIT_REACHED: the project has the plan's tasks per project (feature, limit and usage say so); or the tenant is suspended, or the role may not do this",
  })
  async create(@Param('projectId', UuidPipe) projectId: string, @Body() dto: CreateTaskDto): Promise<TaskDto> {
    return TaskDto.from(await this.tasks.create(projectId, dto));
  }

  @Get()
  @ApiOkResponse({ type: TaskPageDto })
  async list(@Param('projectId', UuidPipe) projectId: string, @Query() q: ListTasksQuery): Promise<TaskPageDto> {
    const items = await this.tasks.list(projectId, q);
    return { items: items.map(TaskDto.from), nextCursor: nextCursor(items, q.limit) };
  }

  @Get(':taskId')
  @ApiOkResponse({ type: TaskDto })
  async get(@Param('projectId', UuidPipe) projectId: string, @Param('taskId', UuidPipe) id: string): Promise<TaskDto> {
    return TaskDto.from(await this.tasks.get(projectId, id));
  }

  @Patch(':taskId')
  @ApiOkResponse({ type: TaskDto })
  async update(
    @Param('projectId', UuidPipe) projectId: string,
    @Param('taskId', UuidPipe) id: string,
    @Body() dto: UpdateTaskDto,
  ): Promise<TaskDto> {
    return TaskDto.from(await this.tasks.update(projectId, id, dto));
  }

  @Delete(':taskId')
  @HttpCode(204)
  @ApiNoContentResponse()
  remove(@Param('projectId', UuidPipe) projectId: string, @Param('taskId', UuidPipe) id: string): Promise<void> {
    return this.tasks.remove(projectId, id);
  }
}
