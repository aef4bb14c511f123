import { request, type Dispatcher } from 'undici'
import type { SubscriberConfig } from '../config/index.js'
import { USER_AGENT } from '../version.js'
import { headerSafe } from './header-safe.js'
import { standardWebhookSignature } from './outbound-signature.js'
import type { AttemptResult, DeliveryData, ErrorClass } from './types.js'

export const RESPONSE_EXCERPT_BYTES = 1024
/** How long the excerpt is read once the status is in: it is for the history, not for the verdict. */
export const RESPONSE_EXCERPT_WAIT_MS = 500

export function deliveryHeaders(
  subscriber: SubscriberConfig,
  data: DeliveryData,
  body: string,
  attempt: number,
  nowSeconds: number,
  stale = false
): Record<string, string> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': USER_AGENT,
    'webhook-id': data.eventId,
    'webhook-timestamp': String(nowSeconds),
    'persona-event-name': headerSafe(data.eventName),
    'persona-relay-attempt': String(attempt),
    'persona-relay-source': data.source
  }
  if (data.createdAt) headers['persona-event-created-at'] = headerSafe(data.createdAt)
  // An ordered subscriber was sent a later event of this object already (ordering.ts).
  if (stale) headers['persona-relay-stale'] = 'true'
  if (subscriber.secrets.length > 0) {
    headers['webhook-signature'] = standardWebhookSignature(subscriber.secrets, data.eventId, nowSeconds, body)
  }
  return headers
}

/** One POST of the original body. Never throws: every way it can go wrong becomes a result. */
export async function sendDelivery(
  subscriber: SubscriberConfig,
  data: DeliveryData,
  body: string,
  attempt: number,
  { dispatcher, stale = false }: { dispatcher?: Dispatcher; stale?: boolean } = {}
): Promise<AttemptResult> {
  const started = performance.now()
  const headers = deliveryHeaders(subscriber, data, body, attempt, Math.floor(Date.now() / 1000), stale)
  // Not AbortSignal.timeout(): its timer, and the signal with it, would live on for the whole timeout
  // after the answer, thousands of them at a time under load. This one is cleared with the status line.
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new DOMException('delivery attempt timed out', 'TimeoutError')), subscriber.timeoutMs)
  let response: Dispatcher.ResponseData
  try {
    response = await request(subscriber.url, {
      method: 'POST',
      headers,
      body,
      signal: controller.signal,
      ...(dispatcher ? { dispatcher } : {})
    })
  } catch (error) {
    const errorClass = classifyError(error)
    return {
      outcome: errorClass === 'timeout' ? 'timeout' : 'network_error',
      errorClass,
      durationMs: elapsed(started)
    }
  } finally {
    // The status decides the outcome: a subscriber slow to finish its answer has still taken the event.
    clearTimeout(timer)
  }
  // Most subscribers answer with no body at all: nothing to wait for or excerpt.
  const responseExcerpt = response.headers['content-length'] === '0' ? (response.body.resume(), '') : await readExcerpt(response.body)
  const ok = response.statusCode >= 200 && response.statusCode < 300
  const retryAfter = response.headers['retry-after']
  return {
    outcome: ok ? 'success' : 'http_error',
    status: response.statusCode,
    durationMs: elapsed(started),
    responseExcerpt,
    ...(typeof retryAfter === 'string' ? { retryAfter } : {})
  }
}

/** Up to the first KiB of the answer, or what arrived within RESPONSE_EXCERPT_WAIT_MS; never throws. */
async function readExcerpt(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = []
  let length = 0
  const timer = setTimeout(() => body.destroy(), RESPONSE_EXCERPT_WAIT_MS)
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      chunks.push(chunk)
      length += chunk.length
      if (length >= RESPONSE_EXCERPT_BYTES) break
    }
  } catch {
    // Cut off by the wait above or by the subscriber: what arrived is excerpt enough.
  } finally {
    clearTimeout(timer)
    // An unfinished body closes the connection; a subscriber's chatty error page is not worth reading.
    body.destroy()
  }
  return Buffer.concat(chunks).subarray(0, RESPONSE_EXCERPT_BYTES).toString('utf8')
}

const TLS_CODES = /^(ERR_TLS|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_SSL)/
/** Thrown by undici's and Node's checks of the request's own arguments, before any connection is used. */
const CLIENT_CODES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'ERR_INVALID_URL', 'ERR_INVALID_ARG_TYPE', 'ERR_INVALID_ARG_VALUE'])

export function classifyError(error: unknown): ErrorClass {
  const { name, code } = errorFields(error)
  if (name === 'TimeoutError' || name === 'AbortError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return 'timeout'
  }
  if (code && CLIENT_CODES.has(code)) return 'client'
  if (code === 'ECONNREFUSED') return 'connection_refused'
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'connection_reset'
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'dns'
  if (code && TLS_CODES.test(code)) return 'tls'
  return 'network'
}

function errorFields(error: unknown): { name?: string; code?: string } {
  if (typeof error !== 'object' || error === null) return {}
  const { name, code, cause } = error as { name?: string; code?: string; cause?: unknown }
  if (!code && cause) return { name, ...errorFields(cause) }
  return { name, code }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10
}
