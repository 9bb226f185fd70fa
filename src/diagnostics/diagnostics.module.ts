import { Module } from '@nestjs/common';
import { DiagnosticsController, TenantDiagnosticsController } from './diagnostics.controller.js';

/** Test and bench only: AppModule registers it when TEST_ROUTES_ENABLED=true (never in production). */
@Module({ controllers: [TenantDiagnosticsController, DiagnosticsController] })
export class DiagnosticsModule {}
