import { Body, Controller, Get, HttpCode, Param, Post, Req, UseGuards } from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiConflictResponse,
  ApiForbiddenResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { AuthUser, CurrentUser } from '../auth/auth-user.js';
import { PlatformAdminGuard } from '../auth/platform-admin.guard.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { UuidPipe } from '../http/validation.js';
import type { Actor } from './actor.js';
import { MoveDto, MoveListDto, MoveTenantDto } from './dto/move.dto.js';
import type { MoveRecord } from './move-engine.js';
import { MovesService } from './moves.service.js';

function actorOf(user: AuthUser, req: FastifyRequest): Actor {
  return { kind: 'user', id: user.id, requestId: String(req.id) };
}

@ApiTags('tenant moves (platform admins)')
@ApiBearerAuth()
@ApiForbiddenResponse({ type: ErrorBodyDto, description: 'The caller is not a platform admin' })
@ApiNotFoundResponse({ type: ErrorBodyDto, description: 'No such tenant or move' })
@UseGuards(PlatformAdminGuard)
@Controller('tenants/:id')
export class MovesController {
  constructor(private readonly moves: MovesService) {}

  private async dto(m: MoveRecord): Promise<MoveDto> {
    return MoveDto.from(m, await this.moves.stateOf(m));
  }

  @Post('move')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Move the tenant to another tier or server',
    description:
      'Starts a background move: prepare the target, copy while the tenant stays available, catch up, freeze writes for the ' +
      'cutover only (writes get 503 with Retry-After, reads go on), verify counts and checksums of every table, flip the ' +
      'routing table, lift the freeze. Follow it at GET /tenants/{id}/moves/{moveId}.',
  })
  @ApiAcceptedResponse({ type: MoveDto, description: 'Started' })
  @ApiBadRequestResponse({ type: ErrorBodyDto, description: 'Invalid tier or server, or the tenant lives there already' })
  @ApiForbiddenResponse({ type: ErrorBodyDto, description: "PLAN_TIER_NOT_ALLOWED: the tenant's plan does not include that tier (upgrade it first); or the caller is not a platform admin" })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'A move is in progress, or the tenant cannot be moved in its state' })
  async start(@Param('id', UuidPipe) id: string, @Body() dto: MoveTenantDto, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<MoveDto> {
    return this.dto(await this.moves.start(id, { tier: dto.tier, server: dto.server }, actorOf(user, req)));
  }

  @Get('moves')
  @ApiOkResponse({ type: MoveListDto })
  async list(@Param('id', UuidPipe) id: string): Promise<MoveListDto> {
    return { items: await Promise.all((await this.moves.list(id)).map((m) => this.dto(m))) };
  }

  @Get('moves/:moveId')
  @ApiOkResponse({ type: MoveDto, description: 'Phase, rows copied, progress, verification, freeze time' })
  async get(@Param('id', UuidPipe) id: string, @Param('moveId', UuidPipe) moveId: string): Promise<MoveDto> {
    return this.dto(await this.moves.get(id, moveId));
  }

  @Post('moves/:moveId/abort')
  @HttpCode(200)
  @ApiOperation({ summary: 'Abort a move before its flip: the target is removed, the tenant stays where it was' })
  @ApiOkResponse({ type: MoveDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'The move has flipped or finished already' })
  async abort(@Param('id', UuidPipe) id: string, @Param('moveId', UuidPipe) moveId: string, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<MoveDto> {
    return this.dto(await this.moves.abort(id, moveId, actorOf(user, req)));
  }

  @Post('moves/:moveId/resume')
  @HttpCode(202)
  @ApiOperation({ summary: 'Resume an interrupted move from where it stopped (copied batches are kept)' })
  @ApiAcceptedResponse({ type: MoveDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'The move is running, has flipped or has finished' })
  async resume(@Param('id', UuidPipe) id: string, @Param('moveId', UuidPipe) moveId: string): Promise<MoveDto> {
    return this.dto(await this.moves.resume(id, moveId));
  }

  @Post('moves/:moveId/cleanup')
  @HttpCode(200)
  @ApiOperation({ summary: 'Clean the source of a flipped move up now instead of after MOVE_CLEANUP_DELAY_SECONDS' })
  @ApiOkResponse({ type: MoveDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'The move has not flipped' })
  async cleanup(@Param('id', UuidPipe) id: string, @Param('moveId', UuidPipe) moveId: string, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<MoveDto> {
    return this.dto(await this.moves.cleanup(id, moveId, actorOf(user, req)));
  }
}
