import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiBadRequestResponse, ApiConflictResponse, ApiCreatedResponse, ApiForbiddenResponse, ApiNoContentResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { PageQuery } from '../http/page.dto.js';
import { UuidPipe } from '../http/validation.js';
import { AllowRoles, TenantScoped } from '../tenancy/tenant-scoped.decorator.js';
import { AddMemberDto, ChangeRoleDto, MemberDto, MemberPageDto } from './dto/member.dto.js';
import { MembersService } from './members.service.js';

@ApiTags('members')
@ApiBadRequestResponse({ type: ErrorBodyDto })
// Members live in the control plane: no tenant transaction (it would hold a second connection).
@TenantScoped({ transaction: false })
@Controller('orgs/:slug/members')
export class MembersController {
  constructor(private readonly members: MembersService) {}

  @Get()
  @ApiOkResponse({ type: MemberPageDto })
  async list(@Query() q: PageQuery): Promise<MemberPageDto> {
    const items = await this.members.list(q.limit, q.cursor);
    return { items: items.map(MemberDto.from), nextCursor: items.length === q.limit ? items[items.length - 1].userId : null };
  }

  @Post()
  @AllowRoles('owner', 'admin')
  @ApiCreatedResponse({ type: MemberDto })
  @ApiForbiddenResponse({
    type: ErrorBodyDto,
    description: "PLAN_LIMIT_REACHED: the plan's seats are all taken (feature, limit and usage say so); or the tenant is suspended, or the role may not do this",
  })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'Already a member' })
  async add(@Body() dto: AddMemberDto): Promise<MemberDto> {
    return MemberDto.from(await this.members.add(dto.email, dto.role));
  }

  @Patch(':userId')
  @AllowRoles('owner', 'admin')
  @ApiOkResponse({ type: MemberDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'Would leave the tenant without an owner' })
  async changeRole(@Param('userId', UuidPipe) userId: string, @Body() dto: ChangeRoleDto): Promise<MemberDto> {
    return MemberDto.from(await this.members.changeRole(userId, dto.role));
  }

  @Delete(':userId')
  @AllowRoles('owner', 'admin')
  @HttpCode(204)
  @ApiNoContentResponse()
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'Would leave the tenant without an owner' })
  remove(@Param('userId', UuidPipe) userId: string): Promise<void> {
    return this.members.remove(userId);
  }
}
