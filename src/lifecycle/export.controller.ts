import { Controller, Get, Param, Query, Req, Res, UseGuards } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiConflictResponse,
  ApiForbiddenResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiProduces,
  ApiServiceUnavailableResponse,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuthUser, CurrentUser } from '../auth/auth-user.js';
import { PlatformAdminGuard } from '../auth/platform-admin.guard.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { UuidPipe } from '../http/validation.js';
import { ExportQuery } from './dto/export.dto.js';
import { CONTENT_TYPES } from './export-format.js';
import { ExportService } from './export.service.js';

@ApiTags('tenant lifecycle (platform admins)')
@ApiBearerAuth()
@ApiForbiddenResponse({ type: ErrorBodyDto, description: 'The caller is not a platform admin' })
@UseGuards(PlatformAdminGuard)
@Controller('tenants')
export class ExportController {
  constructor(private readonly exports: ExportService) {}

  @Get(':id/export')
  @ApiOperation({
    summary: "Stream all of a tenant's data (active, suspended or pending deletion), the same on every tier",
    description:
      'One consistent snapshot of every tenant table, parents first, rows in key order, as PostgreSQL renders them in JSON. ' +
      'ndjson (default): a header line, one {"table","row"} line per row, then a manifest line with the row count and the SHA-256 ' +
      "of each table's row lines; json: {header, tables, manifest} as one document, one row per line. The body is streamed: " +
      'a response that ends without the manifest was cut short. Recorded in the platform audit log (tenant.exported).',
  })
  @ApiProduces(CONTENT_TYPES.ndjson, CONTENT_TYPES.json)
  @ApiOkResponse({
    description: 'The export, as an attachment (Content-Disposition: attachment; filename=<slug>-<timestamp>.<format>)',
    content: {
      [CONTENT_TYPES.ndjson]: { schema: { type: 'string', example: '{"type":"header",...}\n{"table":"projects","row":{...}}\n{"type":"manifest","tables":{...}}\n' } },
      [CONTENT_TYPES.json]: { schema: { type: 'object', properties: { header: { type: 'object' }, tables: { type: 'object' }, manifest: { type: 'object' } } } },
    },
  })
  @ApiBadRequestResponse({ type: ErrorBodyDto, description: 'The id is not a UUID, or the format is not ndjson or json' })
  @ApiNotFoundResponse({ type: ErrorBodyDto, description: 'No tenant has this id' })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'TENANT_STATE_CONFLICT: the tenant is still provisioning, or failed to' })
  @ApiServiceUnavailableResponse({ type: ErrorBodyDto, description: "The tenant's database cannot be reached" })
  async export(
    @Param('id', UuidPipe) id: string,
    @Query() query: ExportQuery,
    @CurrentUser() user: AuthUser,
    @Req() req: FastifyRequest,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    const exp = await this.exports.open(id, query.format, { kind: 'user', id: user.id, requestId: String(req.id) });
    // Sent as it is read (chunked, never buffered); a failure mid-way cuts the response before the
    // manifest. Not awaited: the reply is thenable, and its end is no business of the error filter.
    void reply
      .header('content-type', exp.contentType)
      .header('content-disposition', `attachment; filename="${exp.filename}"`)
      .header('cache-control', 'no-store')
      .header('x-content-type-options', 'nosniff')
      .send(exp.stream);
  }
}
