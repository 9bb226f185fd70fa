import { Module } from '@nestjs/common';
import { TenancyModule } from '../tenancy/tenancy.module.js';
import { Project } from './entities/project.entity.js';
import { Task } from './entities/task.entity.js';
import { ProjectsController } from './projects.controller.js';
import { ProjectsService } from './projects.service.js';
import { TasksController } from './tasks.controller.js';
import { TasksService } from './tasks.service.js';

@Module({
  controllers: [ProjectsController, TasksController],
  providers: [TenancyModule.entities([Project, Task]), ProjectsService, TasksService],
  exports: [ProjectsService],
})
export class ProjectsModule {}
