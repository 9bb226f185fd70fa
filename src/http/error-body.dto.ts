import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

/** The one error shape of every endpoint. */
export class ErrorBodyDto {
  @ApiProperty({ example: 400 })
  status!: number;

  @ApiProperty({ example: 'VALIDATION_FAILED', description: 'Stable machine-readable code' })
  code!: string;

  @ApiProperty({ example: 'slug must match ^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$' })
  message!: string;

  @ApiPropertyOptional({ example: 'slug', description: 'The offending field, where there is one' })
  field?: string;

  @ApiProperty({ example: '0b6f1f1e-3a8e-4c57-9a55-2b7a0f3c1d2e' })
  requestId!: string;

  @ApiPropertyOptional({ example: 'projects', description: 'PLAN_LIMIT_REACHED: the plan feature whose limit was reached' })
  feature?: string;

  @ApiPropertyOptional({ example: 10, description: 'PLAN_LIMIT_REACHED: the plan\'s limit' })
  limit?: number;

  @ApiPropertyOptional({ example: 10, description: 'PLAN_LIMIT_REACHED: the current usage against that limit' })
  usage?: number;
}
