import { Controller, Headers, HttpCode, Post, Req } from '@nestjs/common';
import type { RawBodyRequest } from '@nestjs/common';
import { ApiBadRequestResponse, ApiHeader, ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { Public } from '../auth/auth-user.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { StripeWebhookReceiptDto } from './dto/billing.dto.js';
import { StripeWebhookService } from './stripe-webhook.service.js';

/** Stripe's webhook endpoint: no bearer token, the signature is the credential. */
@ApiTags('billing')
@Controller('webhooks')
export class StripeWebhookController {
  constructor(private readonly webhooks: StripeWebhookService) {}

  @Public()
  @Post('stripe')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Receive a Stripe event',
    description:
      'Verified with STRIPE_WEBHOOK_SECRET on the raw body (Stripe-Signature: t=<s>,v1=<HMAC-SHA256>), within STRIPE_WEBHOOK_TOLERANCE_SECONDS of its timestamp. ' +
      'Acts on customer.subscription.created, .updated, .deleted and invoice.payment_failed; other types are stored as ignored. ' +
      'Each event is stored once by its id with its effect, in one transaction: a repeated delivery answers duplicate: true and changes nothing.',
  })
  @ApiHeader({ name: 'Stripe-Signature', required: true })
  @ApiOkResponse({ type: StripeWebhookReceiptDto })
  @ApiBadRequestResponse({
    type: ErrorBodyDto,
    description: 'BILLING_WEBHOOK_INVALID (forged, stale, altered or unsigned; or an event missing what it needs) or MALFORMED_BODY (not JSON); nothing is stored',
  })
  @ApiServiceUnavailableResponse({ type: ErrorBodyDto, description: 'BILLING_NOT_CONFIGURED: STRIPE_WEBHOOK_SECRET is not set' })
  async receive(@Req() req: RawBodyRequest<FastifyRequest>, @Headers('stripe-signature') signature: string | undefined): Promise<StripeWebhookReceiptDto> {
    const receipt = await this.webhooks.receive(req.rawBody, signature);
    return { received: true, id: receipt.id, duplicate: receipt.duplicate, outcome: receipt.outcome };
  }
}
