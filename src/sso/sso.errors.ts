import { DomainError } from '../http/domain-error.js';

export type SsoErrorCode =
  /** WORKOS_API_KEY / WORKOS_CLIENT_ID are not set (503). */
  | 'SSO_NOT_CONFIGURED'
  /** The tenant has no WorkOS organization linked (404 for sign-in, 409 for settings). */
  | 'SSO_NOT_LINKED'
  | 'SSO_ALREADY_LINKED'
  /** No tenant signs in with SSO for this email domain (or it is not verified). */
  | 'SSO_DOMAIN_NOT_FOUND'
  /** The sign-in state is missing, forged, expired or already used. */
  | 'SSO_STATE_INVALID'
  /** The profile comes from another WorkOS organization than the tenant's. */
  | 'SSO_ORGANIZATION_MISMATCH'
  /** The profile's email is not on one of the tenant's verified domains. */
  | 'SSO_EMAIL_DOMAIN_NOT_ALLOWED'
  /** The tenant's directory has deprovisioned this person: no sign-in until it provisions them again. */
  | 'SSO_USER_DEPROVISIONED'
  /** A sign-in started at the identity provider, which the tenant does not allow. */
  | 'SSO_IDP_INITIATED_NOT_ALLOWED'
  /** WorkOS refused the authorization code (bad, used or expired). */
  | 'SSO_CODE_INVALID'
  | 'SSO_CONNECTION_INACTIVE'
  /** WorkOS could not be reached or answered with an error. */
  | 'SSO_PROVIDER_ERROR'
  /** A webhook delivery whose signature, timestamp or body does not verify. */
  | 'WEBHOOK_SIGNATURE_INVALID';

export class SsoError extends DomainError<SsoErrorCode> {}
