import { Controller, Get } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiTags, ApiUnauthorizedResponse } from '@nestjs/swagger';
import { AuthUser, CurrentUser } from '../auth/auth-user.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { TenantDirectory } from '../tenancy/tenant-directory.service.js';
import { MeDto, MyTenantDto, MyTenantListDto } from './dto/member.dto.js';

@ApiTags('me')
@ApiBearerAuth()
@ApiUnauthorizedResponse({ type: ErrorBodyDto })
@Controller('me')
export class MeController {
  constructor(private readonly directory: TenantDirectory) {}

  @Get()
  @ApiOkResponse({ type: MeDto, description: 'The caller and the tenants they belong to' })
  async me(@CurrentUser() user: AuthUser): Promise<MeDto> {
    const tenants = await this.directory.tenantsOf(user.id);
    return { id: user.id, email: user.email, platformAdmin: user.platformAdmin, tenants: tenants.map(MyTenantDto.from) };
  }

  @Get('tenants')
  @ApiOkResponse({ type: MyTenantListDto, description: 'Every tenant the caller belongs to, with their role; the same token works in each' })
  async tenants(@CurrentUser() user: AuthUser): Promise<MyTenantListDto> {
    return { items: (await this.directory.tenantsOf(user.id)).map(MyTenantDto.from) };
  }
}
