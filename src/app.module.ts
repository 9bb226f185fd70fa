import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_PIPE } from '@nestjs/core';
import { ConfigModule } from '@nestjs/config';
import { LoggerModule } from 'nestjs-pino';
import type { IncomingMessage } from 'node:http';
import type { AppConfig } from '../config/configuration.js';
import { AuditModule } from './audit/audit.module.js';
import { AuthModule } from './auth/auth.module.js';
import { BenchModule } from './bench/bench.module.js';
import { BillingModule } from './billing/billing.module.js';
import { DiagnosticsModule } from './diagnostics/diagnostics.module.js';
import { HealthModule } from './health/health.module.js';
import { ErrorFilter } from './http/error.filter.js';
import { createValidationPipe } from './http/validation.js';
import { LifecycleModule } from './lifecycle/lifecycle.module.js';
import { OrganizationsModule } from './organizations/organizations.module.js';
import { ProjectsModule } from './projects/projects.module.js';
import { SsoModule } from './sso/sso.module.js';
import { SupportModule } from './support/support.module.js';
import type { DatabaseRuntime } from './tenancy/placements.js';
import { TenancyModule } from './tenancy/tenancy.module.js';
import { UsageModule } from './usage/usage.module.js';

const infoLogged = (level: string) => ['trace', 'debug', 'info'].includes(level);

@Module({})
export class AppModule {
  static forRoot(config: AppConfig, runtime: DatabaseRuntime): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true, load: [() => config] }),
        LoggerModule.forRoot({
          forRoutes: ['{*splat}'],
          pinoHttp: {
            level: config.logLevel,
            // Fastify already chose the id (see app.ts); logs and error bodies carry the same one.
            genReqId: (req: IncomingMessage) => (req as IncomingMessage & { id: string }).id,
            // Request lines carry the tenant id. Only when they are written at all: pino-http
            // builds a child logger for these props on every response, logged or not.
            customProps: infoLogged(config.logLevel)
              ? (req: IncomingMessage & { tenantId?: string }) => (req.tenantId ? { tenantId: req.tenantId } : undefined) as object
              : undefined,
            redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]'], censor: '[redacted]' },
            serializers: {
              req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, url: req.url }),
              res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
            },
          },
        }),
        TenancyModule.forRoot({ runtime, providerScope: config.tenantProviderScope }),
        AuditModule,
        BillingModule,
        AuthModule.register({ devLogin: config.auth.devLoginEnabled }),
        OrganizationsModule,
        ProjectsModule,
        HealthModule,
        LifecycleModule,
        SsoModule,
        SupportModule,
        UsageModule,
        ...(config.benchBaselineUrl ? [BenchModule.register(config.benchBaselineUrl, config.database.poolMax)] : []),
        ...(config.testRoutes ? [DiagnosticsModule] : []),
      ],
      providers: [
        { provide: APP_PIPE, useFactory: createValidationPipe },
        { provide: APP_FILTER, useClass: ErrorFilter },
      ],
    };
  }
}
