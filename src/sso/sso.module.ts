import { Module } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import { DirectorySyncProcessor } from './directory-sync.processor.js';
import { DirectorySyncReconciler } from './directory-sync.reconciler.js';
import { DirectorySyncService } from './directory-sync.service.js';
import { SsoAuthController } from './sso-auth.controller.js';
import { SsoController } from './sso.controller.js';
import { SsoService } from './sso.service.js';
import { createWorkOS, WORKOS } from './workos.client.js';
import { WorkOSEventStore } from './workos-events.store.js';
import { WorkOSWebhookController } from './workos-webhook.controller.js';
import { WorkOSWebhookService } from './workos-webhook.service.js';

/**
 * Enterprise sign-in through WorkOS: linking a tenant to its WorkOS organization, SAML sign-in
 * with just-in-time provisioning and role mapping, SSO enforcement, and directory sync (SCIM)
 * webhooks that deprovision people the minute IT removes them.
 */
@Module({
  controllers: [SsoController, SsoAuthController, WorkOSWebhookController],
  providers: [
    SsoService,
    WorkOSEventStore,
    DirectorySyncService,
    DirectorySyncProcessor,
    DirectorySyncReconciler,
    WorkOSWebhookService,
    {
      provide: WORKOS,
      inject: [ConfigService],
      useFactory: (config: ConfigService<AppConfig, true>) => createWorkOS(config.get('workos', { infer: true })),
    },
  ],
  exports: [WORKOS, SsoService],
})
export class SsoModule {}
