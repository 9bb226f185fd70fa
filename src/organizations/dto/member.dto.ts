import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsEmail, IsIn, MaxLength } from 'class-validator';
import type { MemberRecord, MembershipOfUser } from '../../tenancy/tenant-directory.service.js';
import { ROLES, type Role, type TenantStatus, type Tier } from '../../tenancy/tenant-route.js';

const roleMessage = { message: `role must be one of: ${ROLES.join(', ')}` };

export class AddMemberDto {
  @ApiProperty({ example: 'bob@acme.test' })
  @IsEmail({}, { message: 'email must be an email address' })
  @MaxLength(320)
  email!: string;

  @ApiProperty({ enum: ROLES, example: 'member' })
  @IsIn(ROLES, roleMessage)
  role!: Role;
}

export class ChangeRoleDto {
  @ApiProperty({ enum: ROLES, example: 'viewer' })
  @IsIn(ROLES, roleMessage)
  role!: Role;
}

export class MemberDto {
  @ApiProperty({ format: 'uuid' }) userId!: string;
  @ApiProperty() email!: string;
  @ApiProperty({ enum: ROLES }) role!: Role;
  @ApiProperty() createdAt!: string;
  @ApiProperty() updatedAt!: string;

  static from(m: MemberRecord): MemberDto {
    return { userId: m.userId, email: m.email, role: m.role, createdAt: m.createdAt.toISOString(), updatedAt: m.updatedAt.toISOString() };
  }
}

export class MemberPageDto {
  @ApiProperty({ type: [MemberDto] }) items!: MemberDto[];
  @ApiPropertyOptional({ nullable: true, type: String }) nextCursor!: string | null;
}

export class MyTenantDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() slug!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ enum: ['shared', 'schema', 'dedicated'] }) tier!: Tier;
  @ApiProperty({ enum: ['active', 'suspended'] }) status!: TenantStatus;
  @ApiProperty({ enum: ROLES }) role!: Role;

  static from(m: MembershipOfUser): MyTenantDto {
    return { id: m.tenantId, slug: m.slug, name: m.name, tier: m.tier, status: m.status, role: m.role };
  }
}

export class MeDto {
  @ApiProperty({ format: 'uuid' }) id!: string;
  @ApiProperty() email!: string;
  @ApiProperty() platformAdmin!: boolean;
  @ApiProperty({ type: [MyTenantDto] }) tenants!: MyTenantDto[];
}

export class MyTenantListDto {
  @ApiProperty({ type: [MyTenantDto] })
  items!: MyTenantDto[];
}
