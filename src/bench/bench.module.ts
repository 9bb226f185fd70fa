import { DynamicModule, Module } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Project } from '../projects/entities/project.entity.js';
import { BASELINE_DATA_SOURCE, BaselineController } from './baseline.controller.js';

@Module({})
export class BenchModule {
  static register(url: string, poolMax: number): DynamicModule {
    return {
      module: BenchModule,
      controllers: [BaselineController],
      providers: [
        {
          provide: BASELINE_DATA_SOURCE,
          useFactory: () =>
            new DataSource({
              type: 'postgres',
              url,
              entities: [Project],
              installExtensions: false,
              extra: { max: poolMax, options: '-c search_path=tenant_data' },
            }).initialize(),
        },
      ],
    };
  }
}
