import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { Logger } from 'nestjs-pino';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AppConfig } from '../config/configuration.js';
import { AppModule } from './app.module.js';
import { frameworkErrorBody } from './http/error.filter.js';
import { tenantHeaderRewrite } from './tenancy/tenant-header-route.js';
import type { DatabaseRuntime } from './tenancy/placements.js';

const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Builds the HTTP application (not listening yet): used by main.ts, the tests and the benchmark. */
export async function createApp(config: AppConfig, runtime: DatabaseRuntime): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    bodyLimit: 1_048_576,
    routerOptions: { maxParamLength: 500 },
    requestIdHeader: false,
    rewriteUrl: tenantHeaderRewrite(),
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      const body = frameworkErrorBody(error, String(request.id));
      void reply.code(body.status).header('x-request-id', request.id).send(body);
    },
    // A caller's X-Request-Id is kept when it is sane, so a request can be traced across services.
    genReqId: (req: IncomingMessage) => {
      const given = req.headers['x-request-id'];
      const id = typeof given === 'string' && CLIENT_REQUEST_ID.test(given) ? given : randomUUID();
      (req as IncomingMessage & { id: string }).id = id;
      return id;
    },
  });
  adapter.getInstance().addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config, runtime), adapter, {
    bufferLogs: true,
    abortOnError: false,
    rawBody: true,
  });
  app.useLogger(app.get(Logger));

  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Tenancy platform')
      .setDescription(
        'Hybrid tenancy on PostgreSQL: shared (RLS), schema and dedicated tiers behind one API. ' +
          'Every error has the shape {status, code, message, field?, requestId}. ' +
          'Tenant routes /orgs/{slug}/... can also be called without the /orgs/{slug} prefix, naming the tenant in an X-Tenant header.',
      )
      .setVersion('0.1.0')
      .addBearerAuth()
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });
  await app.init();
  return app;
}
