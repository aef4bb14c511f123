import { createHmac } from 'node:crypto'

const SECRET_PREFIX = 'whsec_'

/**
 * The Standard Webhooks `webhook-signature` value: one `v1,<base64>` per secret, space-separated,
 * each an HMAC-SHA256 of `<id>.<timestamp>.<body>` keyed by the base64-decoded secret.
 */
export function standardWebhookSignature(
  secrets: readonly string[],
  id: string,
  timestampSeconds: number,
  body: string | Buffer
): string {
  return secrets
    .map((secret) => {
      const key = Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64')
      const digest = createHmac('sha256', key).update(`${id}.${timestampSeconds}.`).update(body).digest('base64')
      return `v1,${digest}`
    })
    .join(' ')
}
