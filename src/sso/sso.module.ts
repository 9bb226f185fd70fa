import { Module } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import { SsoAuthController } from './sso-auth.controller.js';
import { SsoController } from './sso.controller.js';
import { SsoService } from './sso.service.js';
import { createWorkOS, WORKOS } from './workos.client.js';

/**
 * Enterprise sign-in through WorkOS: linking a tenant to its WorkOS organization, SAML sign-in
 * with just-in-time provisioning and role mapping, SSO enforcement, and directory sync (SCIM)
 * webhooks that deprovision people the minute IT removes them.
 */
@Module({
  controllers: [SsoController, SsoAuthController],
  providers: [
    SsoService,
    {
      provide: WORKOS,
      inject: [ConfigService],
      useFactory: (config: ConfigService<AppConfig, true>) => createWorkOS(config.get('workos', { infer: true })),
    },
  ],
  exports: [WORKOS, SsoService],
})
export class SsoModule {}
