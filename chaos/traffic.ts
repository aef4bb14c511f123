import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { Agent, request } from 'undici'
import { personaEvent, signedHeaders } from '../test/helpers/app.js'
import { freePort } from '../test/helpers/redis.js'
import { sleep, type Cleanup } from './processes.js'

export type Answer = 'ok' | 'reset' | { delayMs: number }

/** How the subscriber treats one request; `attempt` is the relay's persona-relay-attempt header. */
export type Behaviour = (eventId: string, attempt: number, nthRequest: number) => Answer

export interface Delivery {
  count: number
  firstAt: number
}

/**
 * A subscriber on a fixed port that can go down (connection refused) and come back. A delivery
 * counts only when its 2xx answer was fully written to a relay still waiting for it.
 */
export class ChaosSubscriber {
  readonly deliveries = new Map<string, Delivery>()
  requests = 0
  /** Requests per event id and the attempt headers they carried (a delivery retried, or probed, many times shows here). */
  readonly requestsById = new Map<string, number[]>()
  private server: Server | undefined

  private constructor(readonly name: string, readonly port: number, readonly matches: (eventName: string) => boolean, private readonly behaviour: Behaviour) {}

  static async start(cleanup: Cleanup, name: string, matches: (eventName: string) => boolean, behaviour: Behaviour = () => 'ok') {
    const subscriber = new ChaosSubscriber(name, await freePort(), matches, behaviour)
    await subscriber.up()
    cleanup.add(() => subscriber.down())
    return subscriber
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`
  }

  async up(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res))
    server.keepAliveTimeout = 1000
    server.listen(this.port, '127.0.0.1')
    await once(server, 'listening')
    this.server = server
  }

  async down(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (!server) return
    server.closeAllConnections()
    server.close()
    await once(server, 'close')
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    for await (const _chunk of req) { /* drain */ }
    this.requests += 1
    const eventId = String(req.headers['webhook-id'] ?? '')
    const attempt = Number(req.headers['persona-relay-attempt'] ?? 1)
    const attempts = this.requestsById.get(eventId) ?? []
    attempts.push(attempt)
    this.requestsById.set(eventId, attempts)
    const answer = this.behaviour(eventId, attempt, attempts.length)
    if (answer === 'reset') {
      req.socket.destroy()
      return
    }
    if (answer !== 'ok') await sleep(answer.delayMs)
    if (res.destroyed || req.socket.destroyed) return
    res.once('finish', () => {
      const seen = this.deliveries.get(eventId)
      if (seen) seen.count += 1
      else this.deliveries.set(eventId, { count: 1, firstAt: Date.now() })
    })
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
  }
}

export interface SentEvent {
  id: string
  name: string
  acked: boolean
  ackAt?: number
  /** 2xx answers without `duplicate: true`: the relay recorded it (once, unless dedupe failed). */
  recordings: number
  /** When its last answer other than a 2xx came. */
  lastRefusedAt?: number
}

export const EVENT_NAMES = ['inquiry.approved', 'verification.passed'] as const

/** Posting again after an answer other than a 2xx, as Persona does (on compressed time). */
export interface Retry {
  forMs: number
  delayMs: number
}

/**
 * Posts `count` unique signed events at about `ratePerSecond`, at most `concurrency` in flight,
 * each to every URL `targets()` gives at that moment. An event is acknowledged when any post got a 2xx.
 */
export class Sender {
  readonly events: SentEvent[] = []
  readonly statuses = new Map<string, number>()
  /** The error codes of answers other than a 2xx (`503 REPLICAS_UNCONFIRMED`). */
  readonly codes = new Map<string, number>()
  sent = 0
  /** Posts that were retries. */
  retried = 0
  private readonly agent = new Agent({ connections: 64, connectTimeout: 2000, headersTimeout: 5000, bodyTimeout: 5000 })

  constructor(cleanup: Cleanup, private readonly runId: string, private readonly targets: () => string[]) {
    cleanup.add(() => this.agent.destroy())
  }

  async run(count: number, ratePerSecond: number, concurrency = 32, retry?: Retry): Promise<void> {
    let startedAt = Date.now()
    const inFlight = new Set<Promise<void>>()
    // Retries run beside the new posts, outside the concurrency limit, as Persona keeps sending new events.
    const retrying: Promise<void>[] = []
    for (let i = 0; i < count; i += 1) {
      const due = startedAt + (i * 1000) / ratePerSecond
      if (due > Date.now()) await sleep(due - Date.now())
      while (inFlight.size >= concurrency) await Promise.race(inFlight)
      // No target (a relay being restarted): hold the next posts, bounded, as a client would back off.
      for (let waited = 0; this.targets().length === 0 && waited < 60_000; waited += 50) {
        await sleep(50)
        startedAt += 50
      }
      const event: SentEvent = { id: `evt_chaos${this.runId}x${i}`, name: EVENT_NAMES[i % EVENT_NAMES.length]!, acked: false, recordings: 0 }
      this.events.push(event)
      this.sent += 1
      const posted = this.post(event)
        .then(() => { if (retry && !event.acked) retrying.push(this.retry(event, retry)) })
        .finally(() => inFlight.delete(posted))
      inFlight.add(posted)
    }
    await Promise.all(inFlight)
    await Promise.all(retrying)
  }

  private async retry(event: SentEvent, { forMs, delayMs }: Retry): Promise<void> {
    const until = Date.now() + forMs
    while (!event.acked && Date.now() + delayMs < until) {
      await sleep(delayMs)
      this.retried += 1
      await this.post(event)
    }
  }

  private async post(event: SentEvent): Promise<void> {
    const body = personaEvent(event.id, event.name)
    await Promise.all(this.targets().map(async (base) => {
      let status: string
      try {
        const response = await request(`${base}/webhooks/persona`, { method: 'POST', headers: signedHeaders(body), body, dispatcher: this.agent })
        const text = await response.body.text()
        status = String(response.statusCode)
        if (response.statusCode >= 200 && response.statusCode < 300) {
          event.ackAt ??= Date.now()
          event.acked = true
          if (!text.includes('"duplicate":true')) event.recordings += 1
        } else {
          event.lastRefusedAt = Date.now()
          const code = `${status} ${/"code":"([A-Z_]+)"/.exec(text)?.[1] ?? '?'}`
          this.codes.set(code, (this.codes.get(code) ?? 0) + 1)
        }
      } catch (error) {
        status = (error as { code?: string }).code ?? 'error'
      }
      this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1)
    }))
  }
}
