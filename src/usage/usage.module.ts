import { Global, Module } from '@nestjs/common';
import { HttpMetrics } from './http-metrics.js';
import { LimitMetrics } from './limit-metrics.js';
import { MetricsController } from './metrics.controller.js';
import { MetricsService } from './metrics.service.js';
import { OrgUsageController } from './org-usage.controller.js';
import { TenantUsageController } from './tenant-usage.controller.js';
import { UsageMeter } from './usage-meter.service.js';
import { UsageSnapshot } from './usage-snapshot.js';
import { UsageService } from './usage.service.js';

/**
 * Usage metering per tenant and day (usage_daily), its APIs, and the app's Prometheus metrics
 * (/metrics). Global so that any module can register metrics through MetricsService, and the
 * lifecycle sweeper can run the usage snapshot, without importing this module.
 */
@Global()
@Module({
  controllers: [OrgUsageController, TenantUsageController, MetricsController],
  providers: [MetricsService, HttpMetrics, LimitMetrics, UsageMeter, UsageSnapshot, UsageService],
  exports: [MetricsService, UsageMeter, UsageSnapshot],
})
export class UsageModule {}
