import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional } from 'class-validator';
import { EXPORT_FORMATS, type ExportFormat } from '../export-format.js';

export class ExportQuery {
  @ApiPropertyOptional({
    enum: EXPORT_FORMATS,
    default: 'ndjson',
    description: 'ndjson: a header line, one line per row, a manifest line; json: the same as one document',
  })
  @IsOptional()
  @IsIn(EXPORT_FORMATS, { message: `format must be one of: ${EXPORT_FORMATS.join(', ')}` })
  format: ExportFormat = 'ndjson';
}
