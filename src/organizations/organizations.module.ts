import { Module } from '@nestjs/common';
import { MeController } from './me.controller.js';
import { MembersController } from './members.controller.js';
import { MembersService } from './members.service.js';

@Module({
  controllers: [MembersController, MeController],
  providers: [MembersService],
  exports: [MembersService],
})
export class OrganizationsModule {}
