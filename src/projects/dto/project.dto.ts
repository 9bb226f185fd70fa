import { ApiProperty, ApiPropertyOptional, PartialType } from '@nestjs/swagger';
import { IsIn, IsOptional, IsString, ValidateIf } from 'class-validator';
import { PageQuery } from '../../http/page.dto.js';
import { IsStorableText } from '../../http/validation.js';
import type { Project } from '../entities/project.entity.js';
import { TASK_STATUSES, type Task, type TaskStatus } from '../entities/task.entity.js';

export class CreateProjectDto {
  @ApiProperty({ example: 'Website relaunch', minLength: 1, maxLength: 200 })
  @IsString()
  @IsStorableText(1, 200)
  name!: string;

  @ApiPropertyOptional({ maxLength: 5000, nullable: true })
  @IsOptional()
  @IsString()
  @IsStorableText(0, 5000)
  description?: string | null;
}

// null clears the description (optional above) but is refused for name: the column is NOT NULL.
export class UpdateProjectDto extends PartialType(CreateProjectDto, { skipNullProperties: false }) {}

export class ProjectDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() name!: string;
  @ApiPropertyOptional({ nullable: true, type: String }) description!: string | null;
  @ApiProperty() createdAt!: string;
  @ApiProperty() updatedAt!: string;

  static from(p: Project): ProjectDto {
    return {
      id: p.id,
      name: p.name,
      description: p.description,
      createdAt: p.createdAt.toISOString(),
      updatedAt: p.updatedAt.toISOString(),
    };
  }
}

export class ProjectPageDto {
  @ApiProperty({ type: [ProjectDto] }) items!: ProjectDto[];
  @ApiPropertyOptional({ nullable: true, type: String }) nextCursor!: string | null;
}

export class CreateTaskDto {
  @ApiProperty({ example: 'Write the launch post', minLength: 1, maxLength: 500 })
  @IsString()
  @IsStorableText(1, 500)
  title!: string;

  @ApiPropertyOptional({ enum: TASK_STATUSES, default: 'todo' })
  // Absent means 'todo'; null is not a status (and would reach a NOT NULL column on update).
  @ValidateIf((_, value) => value !== undefined)
  @IsIn(TASK_STATUSES, { message: `status must be one of: ${TASK_STATUSES.join(', ')}` })
  status?: TaskStatus;
}

export class UpdateTaskDto extends PartialType(CreateTaskDto, { skipNullProperties: false }) {}

export class ListTasksQuery extends PageQuery {
  @ApiPropertyOptional({ enum: TASK_STATUSES })
  @IsOptional()
  @IsIn(TASK_STATUSES, { message: `status must be one of: ${TASK_STATUSES.join(', ')}` })
  status?: TaskStatus;
}

export class TaskDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty({ format: 'uuid' }) projectId!: string;
  @ApiProperty() title!: string;
  @ApiProperty({ enum: TASK_STATUSES }) status!: TaskStatus;
  @ApiProperty() createdAt!: string;
  @ApiProperty() updatedAt!: string;

  static from(t: Task): TaskDto {
    return {
      id: t.id,
      projectId: t.projectId,
      title: t.title,
      status: t.status,
      createdAt: t.createdAt.toISOString(),
      updatedAt: t.updatedAt.toISOString(),
    };
  }
}

export class TaskPageDto {
  @ApiProperty({ type: [TaskDto] }) items!: TaskDto[];
  @ApiPropertyOptional({ nullable: true, type: String }) nextCursor!: string | null;
}
