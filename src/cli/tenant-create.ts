import { NestFactory } from '@nestjs/core';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import type { AppConfig } from '../../config/configuration.js';
import { AppModule } from '../app.module.js';
import { CreateTenantDto } from '../tenancy/dto/tenant.dto.js';
import { ProvisioningService, ProvisionTenant } from '../tenancy/provisioning.service.js';
import type { TenantRoute } from '../tenancy/tenant-route.js';
import { UsageError } from './cli.errors.js';
import { withPreparedDatabases } from './session.js';

// Loaded only by `tenants create`: the whole app (about a second of imports) is not needed elsewhere.

/** How the API's field names read on this command line. */
const FLAG_OF: Record<string, string> = { slug: 'slug', name: '--name', tier: '--tier', ownerEmail: '--owner', server: '--server', plan: '--plan' };

export interface CreateOptions {
  name: string;
  tier: string;
  owner: string;
  server?: string;
  plan?: string;
}

/** The API's own rules (CreateTenantDto), checked before anything is started or touched. */
export function validateCreate(slug: string, opts: CreateOptions): ProvisionTenant {
  const dto = plainToInstance(CreateTenantDto, { slug, name: opts.name, tier: opts.tier, ownerEmail: opts.owner, server: opts.server, plan: opts.plan });
  const [problem] = validateSync(dto, { whitelist: true, forbidNonWhitelisted: true, stopAtFirstError: true });
  if (problem) {
    const reason = Object.values(problem.constraints ?? {})[0] ?? 'is invalid';
    const why = reason.startsWith(`${problem.property} `) ? reason.slice(problem.property.length + 1) : reason;
    throw new UsageError(`invalid ${FLAG_OF[problem.property] ?? problem.property} '${String(problem.value)}': ${why}`);
  }
  return { slug: dto.slug, name: dto.name, tier: dto.tier, ownerEmail: dto.ownerEmail, server: dto.server, plan: dto.plan };
}

/** Provisions through ProvisioningService in an application context (no HTTP), after the app's own start-up steps. */
export function provisionTenant(config: AppConfig, input: ProvisionTenant): Promise<TenantRoute> {
  return withPreparedDatabases(config, async (runtime) => {
    const app = await NestFactory.createApplicationContext(AppModule.forRoot(config, runtime), { logger: false, abortOnError: false });
    try {
      return await app.get(ProvisioningService).provision(input);
    } finally {
      // Closes the pools and the routing-cache listener (onApplicationShutdown).
      await app.close();
    }
  });
}
