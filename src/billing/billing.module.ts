import { Global, Module } from '@nestjs/common';
import { TENANT_ADMISSION } from '../tenancy/tenant-access.guard.js';
import { BillingAdmission } from './billing-admission.js';
import { Entitlements } from './entitlements.service.js';

/**
 * Plans, billing state and what they allow. Global only so that the tenant access guard,
 * instantiated in every module with tenant routes, finds TENANT_ADMISSION (tenancy defines the
 * port and never imports this module).
 */
@Global()
@Module({
  providers: [Entitlements, BillingAdmission, { provide: TENANT_ADMISSION, useExisting: BillingAdmission }],
  exports: [Entitlements, TENANT_ADMISSION],
})
export class BillingModule {}
