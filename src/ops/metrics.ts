import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Routing } from '../config/routing.js'
import type { SkipReason } from '../delivery/types.js'
import type { IntakeOutcome } from '../intake/outcome.js'

export type AttemptMetricOutcome = 'success' | 'http_error' | 'timeout' | 'network_error' | 'gone'

export type BackfillEventOutcome = 'queued' | 'skipped' | 'invalid' | 'would_queue'

const QUEUE_STATES = ['wait', 'prioritized', 'delayed', 'active', 'completed', 'failed'] as const

/**
 * What the queue gauges read when scraped; the delivery plugin provides it (observeQueues), so that
 * metrics know nothing of how deliveries are stored.
 */
export interface QueueStats {
  subscribers(): string[]
  counts(subscriber: string): Promise<Record<string, number>>
  oldestWaitingMs(subscriber: string): Promise<number>
  paused(subscriber: string): Promise<boolean>
}

/**
 * The relay's Prometheus metrics, in a registry of its own so that several apps in one process
 * (tests) do not collide. Queue gauges are read from Redis when scraped: counts are O(1) per state
 * and the oldest waiting job is one lookup, whatever the backlog.
 */
export class RelayMetrics {
  readonly registry = new Registry()
  private readonly intakeTotal = new Counter({
    name: 'persona_relay_intake_total',
    help: 'Webhook requests by outcome',
    labelNames: ['outcome'],
    registers: [this.registry]
  })
  private readonly intakeDuration = new Histogram({
    name: 'persona_relay_intake_duration_seconds',
    help: 'Time to answer a webhook request',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry]
  })
  private readonly attemptsTotal = new Counter({
    name: 'persona_relay_delivery_attempts_total',
    help: 'Delivery attempts by subscriber and outcome',
    labelNames: ['subscriber', 'outcome'],
    registers: [this.registry]
  })
  private readonly attemptDuration = new Histogram({
    name: 'persona_relay_delivery_duration_seconds',
    help: 'Duration of one delivery attempt',
    labelNames: ['subscriber'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry]
  })
  private readonly endToEnd = new Histogram({
    name: 'persona_relay_end_to_end_seconds',
    help: 'From intake accepted to the subscriber answering 2xx',
    labelNames: ['subscriber'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600, 86400],
    registers: [this.registry]
  })

  private readonly routedTotal = new Counter({
    name: 'persona_relay_routed_total',
    help: 'Recorded events by subscriber whose patterns matched, and whether its payload filter let them through (routed), refused them (filtered) or threw on them (filter_error)',
    labelNames: ['subscriber', 'outcome'],
    registers: [this.registry]
  })
  private readonly skippedTotal = new Counter({
    name: 'persona_relay_delivery_skipped_total',
    help: 'Deliveries never sent, by subscriber and reason (stale: older than one already delivered for its object)',
    labelNames: ['subscriber', 'reason'],
    registers: [this.registry]
  })
  private readonly backfillEventsTotal = new Counter({
    name: 'persona_relay_backfill_events_total',
    help: 'Events listed by a backfill, by what was done with them',
    labelNames: ['outcome'],
    registers: [this.registry]
  })
  private readonly backfillRunsTotal = new Counter({
    name: 'persona_relay_backfill_runs_total',
    help: 'Backfill runs by result',
    labelNames: ['result'],
    registers: [this.registry]
  })

  private queueStats: QueueStats | undefined

  /**
   * While `redisReady` is false the queue gauges are left empty, as the queues' connection would
   * wait for Redis and hang the scrape.
   */
  constructor(redisReady: () => boolean) {
    collectDefaultMetrics({ register: this.registry })
    const readable = () => (redisReady() ? this.queueStats : undefined)
    new Gauge({
      name: 'persona_relay_queue_jobs',
      help: 'Deliveries per subscriber and queue state',
      labelNames: ['subscriber', 'state'],
      registers: [this.registry],
      async collect() {
        this.reset()
        const stats = readable()
        for (const subscriber of stats?.subscribers() ?? []) {
          const counts = await stats!.counts(subscriber)
          for (const state of QUEUE_STATES) this.set({ subscriber, state }, counts[state] ?? 0)
        }
      }
    })
    new Gauge({
      name: 'persona_relay_oldest_waiting_seconds',
      help: 'Age of the oldest delivery waiting to be sent, per subscriber (0 when none waits)',
      labelNames: ['subscriber'],
      registers: [this.registry],
      async collect() {
        this.reset()
        const stats = readable()
        for (const subscriber of stats?.subscribers() ?? []) this.set({ subscriber }, (await stats!.oldestWaitingMs(subscriber)) / 1000)
      }
    })
    new Gauge({
      name: 'persona_relay_subscriber_paused',
      help: '1 while a subscriber is paused (circuit breaker or operator)',
      labelNames: ['subscriber'],
      registers: [this.registry],
      async collect() {
        this.reset()
        const stats = readable()
        for (const subscriber of stats?.subscribers() ?? []) this.set({ subscriber }, (await stats!.paused(subscriber)) ? 1 : 0)
      }
    })
  }

  /** Where the queue gauges come from, once the delivery engine is up. */
  observeQueues(stats: QueueStats): void {
    this.queueStats = stats
  }

  /** One recorded event's routing, webhook or backfill. */
  routed({ subscribers, filtered, filterErrors = [] }: Routing): void {
    for (const subscriber of subscribers) this.routedTotal.inc({ subscriber, outcome: 'routed' })
    for (const subscriber of filtered) this.routedTotal.inc({ subscriber, outcome: filterErrors.includes(subscriber) ? 'filter_error' : 'filtered' })
  }

  skipped(subscriber: string, reason: SkipReason): void {
    this.skippedTotal.inc({ subscriber, reason })
  }

  intake(outcome: IntakeOutcome, seconds: number): void {
    this.intakeTotal.inc({ outcome })
    this.intakeDuration.observe(seconds)
  }

  // Label sets bound once: prom-client hashes the labels of every unbound call, three per delivery.
  private readonly bound = new Map<string, { attempts: Map<string, { inc(): void }>; duration: { observe(value: number): void }; endToEnd: { observe(value: number): void } }>()

  private boundTo(subscriber: string) {
    let series = this.bound.get(subscriber)
    if (!series) {
      series = { attempts: new Map(), duration: this.attemptDuration.labels({ subscriber }), endToEnd: this.endToEnd.labels({ subscriber }) }
      this.bound.set(subscriber, series)
    }
    return series
  }

  attempt(subscriber: string, outcome: AttemptMetricOutcome, seconds: number): void {
    const series = this.boundTo(subscriber)
    let attempts = series.attempts.get(outcome)
    if (!attempts) {
      attempts = this.attemptsTotal.labels({ subscriber, outcome })
      series.attempts.set(outcome, attempts)
    }
    attempts.inc()
    series.duration.observe(seconds)
  }

  backfillEvents(outcome: BackfillEventOutcome, count = 1): void {
    this.backfillEventsTotal.inc({ outcome }, count)
  }

  backfillRun(result: 'succeeded' | 'failed'): void {
    this.backfillRunsTotal.inc({ result })
  }

  delivered(subscriber: string, receivedAt: string): void {
    const received = Date.parse(receivedAt)
    if (!Number.isNaN(received)) this.boundTo(subscriber).endToEnd.observe(Math.max(Date.now() - received, 0) / 1000)
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: RelayMetrics
  }
}

/**
 * `metrics` for the other plugins, and `GET /metrics` in Prometheus text format: on the main port,
 * or, when METRICS_PORT is set, only on a listener of its own (kept off a public load balancer).
 */
export const metricsPlugin = fp<{ metricsPort: number | undefined; host: string }>(
  async (app, { metricsPort, host }) => {
    const metrics = new RelayMetrics(() => app.redis.status === 'ready')
    app.decorate('metrics', metrics)
    const serve = async (server: FastifyInstance) => {
      server.get('/metrics', { config: { requestLog: false } }, async (_request, reply) => {
        return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
      })
    }
    if (metricsPort === undefined) {
      await serve(app)
      return
    }
    const server = Fastify({ logger: false })
    await serve(server)
    // onReady, not onListen: listen() waits for it, so the metrics port is open once the app is.
    app.addHook('onReady', async () => {
      await server.listen({ port: metricsPort, host })
    })
    app.addHook('onClose', async () => {
      await server.close()
    })
  },
  { name: 'metrics', dependencies: ['redis'] }
)
