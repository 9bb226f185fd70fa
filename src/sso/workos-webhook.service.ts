import { Inject, Injectable, Logger } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { Event as WorkOSEvent, WorkOS } from '@workos-inc/node';
import type { AppConfig } from '../../config/configuration.js';
import { HttpError } from '../http/domain-error.js';
import { DirectorySyncProcessor } from './directory-sync.processor.js';
import { SsoError } from './sso.errors.js';
import { requireWorkOS, WORKOS } from './workos.client.js';
import { WorkOSEventStore } from './workos-events.store.js';

/** WorkOS's own default: a delivery signed more than 3 minutes ago is refused (a replay). */
const TOLERANCE_MS = 180_000;

export interface WebhookReceipt {
  id: string;
  /** False when this event was stored by an earlier delivery (or reconciliation): nothing changed. */
  stored: boolean;
}

/**
 * Webhook deliveries: verified on the raw body with the SDK (WorkOS-Signature, HMAC over the
 * timestamp and the exact bytes, within 3 minutes), stored once by event id, acknowledged at
 * once; processing is the DirectorySyncProcessor's, after the answer.
 */
@Injectable()
export class WorkOSWebhookService {
  private readonly logger = new Logger(WorkOSWebhookService.name);
  private readonly secret?: string;

  constructor(
    @Inject(WORKOS) private readonly workos: WorkOS | null,
    private readonly store: WorkOSEventStore,
    private readonly processor: DirectorySyncProcessor,
    config: ConfigService<AppConfig, true>,
  ) {
    this.secret = config.get('workos', { infer: true }).webhookSecret;
  }

  async receive(rawBody: Buffer | undefined, signature: string | undefined): Promise<WebhookReceipt> {
    const workos = requireWorkOS(this.workos);
    if (!this.secret) {
      throw new SsoError('SSO_NOT_CONFIGURED', 'WorkOS webhooks are not configured on this platform (WORKOS_WEBHOOK_SECRET)', undefined, { 'retry-after': '3600' });
    }
    const invalid = (why: string) => new SsoError('WEBHOOK_SIGNATURE_INVALID', `the webhook is refused: ${why}`, 'WorkOS-Signature');
    if (!signature) throw invalid('the WorkOS-Signature header is missing');
    if (!rawBody?.length) throw invalid('the body is empty');
    let event: WorkOSEvent;
    try {
      event = await workos.webhooks.constructEvent({ payload: rawBody, sigHeader: signature, secret: this.secret, tolerance: TOLERANCE_MS });
    } catch (err) {
      // The SDK's reason (bad signature, timestamp outside the tolerance, malformed header) is
      // safe to say; it names nothing secret.
      this.logger.warn({ reason: (err as Error).message }, 'WorkOS webhook refused');
      throw invalid((err as Error).message || 'the signature does not verify');
    }
    if (typeof event?.id !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(event.id) || typeof event.event !== 'string' || !event.event) {
      throw new HttpError('MALFORMED_BODY', 'a WorkOS event needs an id (1-200 printable characters) and an event name', 'id');
    }
    const stored = await this.store.store([event], 'webhook');
    if (stored.size) this.processor.wake();
    return { id: event.id, stored: stored.size > 0 };
  }
}
