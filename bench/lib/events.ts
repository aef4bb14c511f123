import { createHmac, randomBytes } from 'node:crypto'

export const SECRET = 'wbhsec_bench0000-1111-2222-3333-444444444444'
export const WEBHOOK_PATH = '/webhooks/persona'
export const EVENT_BYTES = 2048

const RUN = randomBytes(4).toString('hex')
let counter = 0

/**
 * A unique Persona event envelope padded to exactly EVENT_BYTES. `bench-sent-at` (epoch ms, sub-ms
 * precision) lets a subscriber compute end-to-end latency from the body it receives.
 */
export function eventBody(sentAt = 0): string {
  counter += 1
  const id = `evt_bench${RUN}${counter.toString().padStart(10, '0')}`
  const at = new Date().toISOString()
  const head = `{"data":{"type":"event","id":"${id}","attributes":{"name":"inquiry.approved","created-at":"${at}",` +
    `"bench-sent-at":${sentAt.toFixed(3).padStart(20, ' ')},"payload":{"data":{"type":"inquiry","id":"inq_${id.slice(4)}",` +
    `"attributes":{"status":"approved","reference-id":"user_000123","padding":"`
  const tail = '"}}}}}}'
  return head + 'x'.repeat(EVENT_BYTES - head.length - tail.length) + tail
}

export function signature(body: string, secret = SECRET, nowSeconds = Math.floor(Date.now() / 1000)): string {
  const v1 = createHmac('sha256', secret).update(`${nowSeconds}.${body}`).digest('hex')
  return `t=${nowSeconds},v1=${v1}`
}

export function nowMs(): number {
  return performance.timeOrigin + performance.now()
}

/** Headers and body of one fresh, correctly (or deliberately wrongly) signed event. */
export function signedRequest(options: { badSignature?: boolean; sentAt?: number } = {}) {
  const body = eventBody(options.sentAt ?? 0)
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'persona-signature': signature(body, options.badSignature ? 'wbhsec_not-the-secret' : SECRET)
    }
  }
}
