import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import type { TenantAdmission } from '../tenancy/tenant-access.guard.js';
import type { TenantAccess } from '../tenancy/tenant-route.js';
import { BillingError } from './billing.errors.js';
import { Entitled, Entitlements } from './entitlements.service.js';

/**
 * The plan's word on each tenant request: an unpaid tenant past its grace period may only read
 * (402 for writes, its data untouched), and every request carries its plan's per-request limits
 * (rate, statement timeout, concurrency), which tenancy enforces.
 */
@Injectable()
export class BillingAdmission implements TenantAdmission {
  private readonly skip: boolean;

  constructor(
    private readonly entitlements: Entitlements,
    config: ConfigService<AppConfig, true>,
  ) {
    this.skip = config.get('benchSkipBilling', { infer: true });
  }

  admit(access: TenantAccess, isRead: boolean): void | Promise<void> {
    if (this.skip) return;
    const entitled = this.entitlements.of(access.route.id);
    if (entitled instanceof Promise) return entitled.then((e) => this.apply(access, isRead, e));
    this.apply(access, isRead, entitled);
  }

  private apply(access: TenantAccess, isRead: boolean, e: Entitled): void {
    if (!isRead && e.readOnlySince !== null && e.readOnlySince.getTime() <= Date.now()) {
      const why = e.state.status === 'trialing' ? 'its trial ended without a subscription' : 'its payment is past due';
      throw new BillingError(
        'PAYMENT_REQUIRED',
        `tenant '${access.route.slug}' is read-only because ${why}; reads and exports keep working and no data is lost; writes resume once billing is settled`,
      );
    }
    access.limits = e.limits;
  }
}
