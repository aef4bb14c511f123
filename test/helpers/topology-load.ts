import { Agent, request } from 'undici'
import type { Test } from 'tap'
import { personaEvent, signedHeaders } from './app.js'
import type { TestRedis } from './redis.js'
import { startRelayProcess, type RelayProcess } from './relay-process.js'
import type { TestSubscriber } from './subscriber.js'

/** Retries and lock expiry on compressed time, so that a failover test takes seconds. */
export const FAST_DELIVERY: Record<string, string> = {
  DELIVERY_RETRY_SCHEDULE: '0.2,0.5,1',
  DELIVERY_MAX_ATTEMPTS: '40',
  DELIVERY_TIMEOUT_MS: '1000',
  // Also how soon a fan-out entry left pending by a failed acknowledgement is taken over.
  DELIVERY_LOCK_DURATION_MS: '3000',
  BREAKER_PROBE_INTERVAL_SECONDS: '1'
}

/** The intake stream of one partition in the tagged layout (store/keys.ts), under the default prefix. */
export const intakeKey = (partition: number, prefix = 'persona-relay') => `${prefix}:{i${partition}}:intake`

/**
 * A relay process on a cluster or sentinels: `topology` holds REDIS_CLUSTER_NODES, or
 * REDIS_SENTINELS and REDIS_SENTINEL_NAME; REDIS_URL is set empty, which the config ignores.
 */
export function startTopologyRelay(t: Test, name: string, topology: Record<string, string>, env: Record<string, string>): Promise<RelayProcess> {
  return startRelayProcess(t, name, { url: '' } as TestRedis, { ...env, ...topology, REDIS_URL: '' })
}

export interface PostedEvent {
  id: string
  /** Every answer it got, in order: a status code (`200 duplicate`, `503 REPLICAS_UNCONFIRMED`), or the client's error code. */
  answers: string[]
  ackAt?: number
}

export interface LoadOptions {
  count: number
  ratePerSecond: number
  /** Retry a non-2xx answer this long after the first post, as Persona does (compressed). */
  retryForMs?: number
  retryDelayMs?: number
}

/**
 * Posts unique signed events to the relay at a steady rate, each retried after a non-2xx answer
 * until it gets a 2xx (or its retry time runs out), as Persona retries. An event is acknowledged
 * by its 2xx.
 */
export class WebhookLoad {
  readonly events: PostedEvent[] = []
  readonly answers = new Map<string, number>()
  /** When the first and the last answer other than a 2xx came. */
  refusedFrom: number | undefined
  refusedUntil: number | undefined
  private readonly agent = new Agent({ connections: 64, connectTimeout: 2000, headersTimeout: 6000, bodyTimeout: 6000 })

  constructor(private readonly baseUrl: string, private readonly runId: string) {}

  get sent(): number {
    return this.events.length
  }

  async run({ count, ratePerSecond, retryForMs = 45_000, retryDelayMs = 250 }: LoadOptions): Promise<void> {
    const startedAt = Date.now()
    const offset = this.events.length
    const posts: Promise<void>[] = []
    for (let index = 0; index < count; index += 1) {
      const due = startedAt + (index * 1000) / ratePerSecond
      if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()))
      const event: PostedEvent = { id: `evt_fo${this.runId}x${offset + index}`, answers: [] }
      this.events.push(event)
      posts.push(this.deliver(event, Date.now() + retryForMs, retryDelayMs))
    }
    await Promise.all(posts)
  }

  private async deliver(event: PostedEvent, retryUntil: number, retryDelayMs: number): Promise<void> {
    for (;;) {
      const answer = await this.post(event.id)
      event.answers.push(answer)
      this.answers.set(answer, (this.answers.get(answer) ?? 0) + 1)
      if (answer.startsWith('2')) {
        event.ackAt = Date.now()
        return
      }
      this.refusedFrom ??= Date.now()
      this.refusedUntil = Date.now()
      if (Date.now() + retryDelayMs > retryUntil) return
      await new Promise((resolve) => setTimeout(resolve, retryDelayMs))
    }
  }

  private async post(id: string): Promise<string> {
    const body = personaEvent(id, 'inquiry.approved')
    try {
      const response = await request(`${this.baseUrl}/webhooks/persona`, { method: 'POST', headers: signedHeaders(body), body, dispatcher: this.agent })
      const text = await response.body.text()
      if (response.statusCode < 300) return text.includes('"duplicate":true') ? `${response.statusCode} duplicate` : String(response.statusCode)
      if (response.statusCode < 400) return String(response.statusCode)
      const code = errorCode(text)
      return code ? `${response.statusCode} ${code}` : String(response.statusCode)
    } catch (error) {
      return (error as { code?: string }).code ?? 'error'
    }
  }

  acknowledged(): PostedEvent[] {
    return this.events.filter((event) => event.ackAt !== undefined)
  }

  /** Answers other than 200 and 503, as `answer×count`. */
  unexpectedAnswers(): string[] {
    return [...this.answers].filter(([answer]) => !/^(200|503)( |$)/.test(answer)).map(([answer, n]) => `${answer}×${n}`)
  }

  count(prefix: string): number {
    return [...this.answers].reduce((sum, [answer, n]) => sum + (answer.startsWith(prefix) ? n : 0), 0)
  }

  summary(): string {
    return [...this.answers].sort().map(([answer, n]) => `${answer}×${n}`).join(' ')
  }

  close(): Promise<void> {
    return this.agent.destroy()
  }
}

function errorCode(text: string): string | undefined {
  try {
    return (JSON.parse(text) as { code?: string }).code
  } catch {
    return undefined
  }
}

/** Requests per webhook-id the subscriber answered (it answers 200 to each). */
export function deliveriesById(subscriber: TestSubscriber): Map<string, number> {
  const counts = new Map<string, number>()
  for (const { headers } of subscriber.received) {
    const id = String(headers['webhook-id'] ?? '')
    counts.set(id, (counts.get(id) ?? 0) + 1)
  }
  return counts
}

export interface LossTally {
  sent: number
  acknowledged: number
  delivered: number
  lost: string[]
  duplicates: number
}

export function tallyLoss(load: WebhookLoad, subscriber: TestSubscriber): LossTally {
  const deliveries = deliveriesById(subscriber)
  const acknowledged = load.acknowledged()
  return {
    sent: load.sent,
    acknowledged: acknowledged.length,
    delivered: acknowledged.filter((event) => deliveries.has(event.id)).length,
    lost: acknowledged.filter((event) => !deliveries.has(event.id)).map((event) => event.id),
    duplicates: [...deliveries.values()].reduce((sum, n) => sum + n - 1, 0)
  }
}

/** Polls until every acknowledged event reached the subscriber or the time is up; the tally either way. */
export async function awaitDelivery(load: WebhookLoad, subscriber: TestSubscriber, timeoutMs: number): Promise<LossTally> {
  const deadline = Date.now() + timeoutMs
  while (tallyLoss(load, subscriber).lost.length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200))
  return tallyLoss(load, subscriber)
}
