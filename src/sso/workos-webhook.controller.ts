import { Controller, Headers, HttpCode, Post, Req } from '@nestjs/common';
import type { RawBodyRequest } from '@nestjs/common';
import { ApiBadRequestResponse, ApiHeader, ApiOkResponse, ApiOperation, ApiProperty, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { Public } from '../auth/auth-user.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { WorkOSWebhookService } from './workos-webhook.service.js';

export class WebhookReceiptDto {
  @ApiProperty({ example: true })
  received!: true;

  @ApiProperty({ example: 'event_01HXYZ', description: "WorkOS's event id" })
  id!: string;

  @ApiProperty({ description: 'False when an earlier delivery (or reconciliation) already stored this event: nothing changed' })
  stored!: boolean;
}

/** WorkOS's webhook endpoint (directory sync and connection events): no bearer token, the signature is the credential. */
@ApiTags('sso')
@Controller('webhooks')
export class WorkOSWebhookController {
  constructor(private readonly webhooks: WorkOSWebhookService) {}

  @Public()
  @Post('workos')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Receive a WorkOS event',
    description:
      'Verified with WORKOS_WEBHOOK_SECRET on the raw body (WorkOS-Signature: t=<ms>, v1=<HMAC-SHA256>), within 3 minutes of its timestamp; ' +
      'stored once by event id and acknowledged at once, then processed in the background with retries. A repeated delivery answers 200 and changes nothing.',
  })
  @ApiHeader({ name: 'WorkOS-Signature', required: true })
  @ApiOkResponse({ type: WebhookReceiptDto })
  @ApiBadRequestResponse({ type: ErrorBodyDto, description: 'WEBHOOK_SIGNATURE_INVALID (forged, stale, altered or unsigned) or MALFORMED_BODY; nothing is stored' })
  @ApiServiceUnavailableResponse({ type: ErrorBodyDto, description: 'SSO_NOT_CONFIGURED: no WorkOS API key or webhook secret' })
  async receive(@Req() req: RawBodyRequest<FastifyRequest>, @Headers('workos-signature') signature: string | undefined): Promise<WebhookReceiptDto> {
    const receipt = await this.webhooks.receive(req.rawBody, signature);
    return { received: true, id: receipt.id, stored: receipt.stored };
  }
}
