import { DynamicModule, Global, Module, Provider, Scope } from '@nestjs/common';
import { ContextIdFactory } from '@nestjs/core';
import { ConfigService } from '@nestjs/config';
import type { AppConfig, TenantProviderScope } from '../../config/configuration.js';
import { TenantBulkhead, TenantLimitCounters } from './bulkhead.js';
import type { DatabaseRuntime } from './placements.js';
import { DATABASE_RUNTIME } from './placements.js';
import { ProvisioningService } from './provisioning.service.js';
import { RoutingTable } from './routing-table.service.js';
import { TenantAccessGuard } from './tenant-access.guard.js';
import { TenantConnectionProvider } from './tenant-connection.provider.js';
import { TenantContextIdStrategy } from './tenant-context-id.strategy.js';
import { TenantContextStore } from './tenant-context.js';
import { TenantDirectory } from './tenant-directory.service.js';
import { EntityTarget, TenantEntityRegistry, TenantPools } from './tenant-pools.service.js';
import { TenantsController } from './tenants.controller.js';
import { ThrottlerModule, tenantThrottlerOptions, TenantThrottlerGuard } from './tenant-throttler.guard.js';
import { TenantAccessInterceptor, TenantTransactionInterceptor } from './tenant-transaction.interceptor.js';

export interface TenancyOptions {
  runtime: DatabaseRuntime;
  /**
   * 'singleton': one instance that finds the request's transaction in AsyncLocalStorage;
   * 'durable': one per tenant (DI sub-tree per tenant); 'request': one per request. All three
   * hand each request its own confined connection; they differ in cost (see BENCHMARKS.md).
   */
  providerScope: TenantProviderScope;
}

@Global()
@Module({})
export class TenancyModule {
  static forRoot(options: TenancyOptions): DynamicModule {
    if (options.providerScope === 'durable') ContextIdFactory.apply(new TenantContextIdStrategy());
    const exported = [TenantPools, RoutingTable, TenantDirectory, TenantContextStore, TenantEntityRegistry, TenantConnectionProvider, DATABASE_RUNTIME];
    return {
      module: TenancyModule,
      imports: [
        // Rate-limit counters in this process. For several instances pass a shared store, e.g.
        // tenantThrottlerOptions(pct, new ThrottlerStorageRedisService(redis)) (see README).
        ThrottlerModule.forRootAsync({
          inject: [ConfigService],
          useFactory: (config: ConfigService<AppConfig, true>) => tenantThrottlerOptions(config.get('limits', { infer: true }).userRatePercent),
        }),
      ],
      controllers: [TenantsController],
      providers: [
        { provide: DATABASE_RUNTIME, useValue: options.runtime },
        TenantEntityRegistry,
        TenantPools,
        RoutingTable,
        TenantDirectory,
        TenantContextStore,
        ProvisioningService,
        TenantAccessGuard,
        TenantTransactionInterceptor,
        TenantAccessInterceptor,
        TenantLimitCounters,
        TenantBulkhead,
        TenantThrottlerGuard,
        {
          provide: TenantConnectionProvider,
          scope: options.providerScope === 'singleton' ? Scope.DEFAULT : Scope.REQUEST,
          durable: options.providerScope === 'durable',
          inject: [TenantContextStore],
          useFactory: (store: TenantContextStore) => new TenantConnectionProvider(store),
        },
      ],
      exports: [...exported, TenantAccessGuard, TenantThrottlerGuard, TenantTransactionInterceptor, TenantAccessInterceptor, TenantLimitCounters, TenantBulkhead],
    };
  }

  /** A provider for the owning module: registers tenant-owned entities so every placement's pool knows them. */
  static entities(entities: EntityTarget[]): Provider {
    return {
      provide: Symbol('tenant-entities'),
      inject: [TenantEntityRegistry],
      useFactory: (registry: TenantEntityRegistry) => entities.forEach((e) => registry.entities.add(e)),
    };
  }
}
