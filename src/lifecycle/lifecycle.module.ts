import { Module } from '@nestjs/common';

/**
 * Tenant lifecycle: suspension, deletion and purge, export, and moves between placements.
 * Everything here is for platform admins (HTTP) and operators (CLI).
 */
@Module({
  controllers: [],
  providers: [],
})
export class LifecycleModule {}
