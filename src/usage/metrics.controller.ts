import { Controller, Get, Header } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { prometheusContentType } from 'prom-client';
import { Public } from '../auth/auth-user.js';
import { MetricsService } from './metrics.service.js';

/** Prometheus scrapes this; like /health it needs no token (keep it off the public network). */
@ApiTags('metrics')
@Public()
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  @Get()
  @Header('content-type', prometheusContentType)
  @Header('cache-control', 'no-store')
  @ApiOperation({ summary: "This instance's metrics in the Prometheus text format (requests by route and tier, pools, process)" })
  @ApiProduces(prometheusContentType)
  @ApiOkResponse({ description: 'Prometheus text exposition format 0.0.4', schema: { type: 'string' } })
  scrape(): Promise<string> {
    return this.metrics.scrape();
  }
}
