import { Module } from '@nestjs/common';
import { ExportController } from './export.controller.js';
import { ExportService } from './export.service.js';
import { LifecycleController } from './lifecycle.controller.js';
import { LifecycleService } from './lifecycle.service.js';
import { MovesController } from './moves.controller.js';
import { MovesService } from './moves.service.js';
import { LifecycleSweeper } from './sweeper.service.js';
import { TenantPurge } from './tenant-purge.js';

/**
 * Tenant lifecycle: suspension, deletion and purge, export, and moves between placements.
 * Everything here is for platform admins (HTTP) and operators (CLI).
 */
@Module({
  controllers: [MovesController, LifecycleController, ExportController],
  providers: [MovesService, LifecycleService, TenantPurge, LifecycleSweeper, ExportService],
  exports: [MovesService, LifecycleService],
})
export class LifecycleModule {}
