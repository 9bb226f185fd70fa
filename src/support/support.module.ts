import { Global, Module } from '@nestjs/common';
import { SUPPORT_ACCESS } from '../tenancy/tenant-access.guard.js';
import { SupportAccessService } from './support-access.service.js';
import { SupportGrantsController } from './support-grants.controller.js';
import { SupportGrantsService } from './support-grants.service.js';
import { SupportGrantsStore } from './support-grants.store.js';
import { SupportRequestAudit } from './support-request-audit.js';
import { TenantSupportGrantsController, TenantSupportSettingsController } from './tenant-support.controller.js';

/**
 * Support access: platform support staff reach into a tenant only through an explicit, expiring,
 * audited grant. Global only so that the tenant access guard, instantiated in every module with
 * tenant routes, finds SUPPORT_ACCESS (tenancy defines the port and never imports this module).
 */
@Global()
@Module({
  controllers: [SupportGrantsController, TenantSupportGrantsController, TenantSupportSettingsController],
  providers: [
    SupportGrantsStore,
    SupportGrantsService,
    SupportAccessService,
    SupportRequestAudit,
    { provide: SUPPORT_ACCESS, useExisting: SupportAccessService },
  ],
  exports: [SUPPORT_ACCESS, SupportGrantsService],
})
export class SupportModule {}
