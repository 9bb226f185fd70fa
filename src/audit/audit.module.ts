import { Global, Module } from '@nestjs/common';
import { AuditCheckpoints } from './audit-checkpoints.service.js';
import { AuditSealer } from './audit-sealer.service.js';
import { AuditController } from './audit.controller.js';
import { AuditService } from './audit.service.js';

/** The tenant audit log: every module records its writes with AuditService, in the same transaction. */
@Global()
@Module({
  controllers: [AuditController],
  providers: [AuditService, AuditCheckpoints, AuditSealer],
  exports: [AuditService, AuditCheckpoints, AuditSealer],
})
export class AuditModule {}
