import { Global, Module } from '@nestjs/common';
import { TENANT_ADMISSION } from '../tenancy/tenant-access.guard.js';
import { BillingAdmission } from './billing-admission.js';
import { PlansController, TenantBillingAdminController, TenantBillingController } from './billing.controller.js';
import { BillingService } from './billing.service.js';
import { Entitlements } from './entitlements.service.js';
import { StripeWebhookController } from './stripe-webhook.controller.js';
import { StripeWebhookService } from './stripe-webhook.service.js';
import { PlanLimits } from './plan-limits.js';

/**
 * Plans, billing state and what they allow. Global only so that the tenant access guard,
 * instantiated in every module with tenant routes, finds TENANT_ADMISSION (tenancy defines the
 * port and never imports this module).
 */
@Global()
@Module({
  controllers: [TenantBillingController, PlansController, TenantBillingAdminController, StripeWebhookController],
  providers: [Entitlements, BillingAdmission, { provide: TENANT_ADMISSION, useExisting: BillingAdmission }, BillingService, StripeWebhookService, PlanLimits],
  exports: [Entitlements, BillingService, TENANT_ADMISSION, PlanLimits],
})
export class BillingModule {}
