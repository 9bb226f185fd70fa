import { DynamicModule, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ConfigService } from '@nestjs/config';
import { JwtModule } from '@nestjs/jwt';
import { PassportModule } from '@nestjs/passport';
import type { AppConfig } from '../../config/configuration.js';
import { AuthService } from './auth.service.js';
import { DevLoginController } from './dev-login.controller.js';
import { JwtAuthGuard } from './jwt-auth.guard.js';
import { JwtStrategy } from './jwt.strategy.js';
import { PlatformAdminGuard } from './platform-admin.guard.js';
import { SessionStore } from './session-store.service.js';
import { SessionsController } from './sessions.controller.js';

@Module({})
export class AuthModule {
  static register(options: { devLogin: boolean }): DynamicModule {
    return {
      module: AuthModule,
      // Sign-in methods in other modules (SSO) issue sessions through AuthService.
      global: true,
      imports: [
        PassportModule,
        JwtModule.registerAsync({
          inject: [ConfigService],
          useFactory: (config: ConfigService<AppConfig, true>) => ({ secret: config.get('auth', { infer: true }).jwtSecret }),
        }),
      ],
      controllers: [SessionsController, ...(options.devLogin ? [DevLoginController] : [])],
      providers: [AuthService, SessionStore, JwtStrategy, PlatformAdminGuard, { provide: APP_GUARD, useClass: JwtAuthGuard }],
      exports: [AuthService, SessionStore, PlatformAdminGuard],
    };
  }
}
