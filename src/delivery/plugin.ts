import fp from 'fastify-plugin'
import type { Worker } from 'bullmq'
import type { Config } from '../config/index.js'
import { Completions } from '../store/completions.js'
import { EventBodies } from '../store/event-bodies.js'
import { BACKGROUND_OPTIONS, closeRedis, connectRedis } from '../store/redis.js'
import { withScripts } from '../store/scripts.js'
import { Activity } from './activity.js'
import { deliveryCounts } from './deliveries.js'
import { ABANDONED_AFTER_MS, Fanout } from './fanout.js'
import { FirstAttempts } from './first-attempt.js'
import { startMaintenance } from './maintenance.js'
import { Ordering } from './ordering.js'
import { Outcomes } from './outcomes.js'
import { RateLimit } from './rate-limit.js'
import { Redaction } from './redaction.js'
import { createQueue, deliveryJobOptions, oldestWaitingMs, type DeliveryQueue } from './queue.js'
import { Slots } from './slots.js'
import { SubscriberControl } from './subscriber-control.js'
import { createRetryWorker, probeAttempt, type RetryWorkerOptions } from './worker.js'

export interface Delivery {
  queues: ReadonlyMap<string, DeliveryQueue>
  /** Every completed delivery, whichever step delivered it. */
  completions: Completions
  controls: ReadonlyMap<string, SubscriberControl>
  isRunning(): boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    delivery: Delivery
  }
}

const QUEUE_STATES = ['wait', 'prioritized', 'delayed', 'active', 'completed', 'failed'] as const

/** The delivery engine (src/delivery/README.md): fan-out's first attempts, and one retry queue and worker per subscriber. */
export const deliveryPlugin = fp<{ config: Config }>(
  async (app, { config }) => {
    const keys = app.eventStore.keys
    // An intake-only instance keeps the queues (for the admin API) but leaves delivery to workers.
    const delivers = config.role !== 'intake'
    const connection = connectRedis(config.redis, BACKGROUND_OPTIONS, 'persona-relay:delivery')
    // The relay's own reads and transactions (bodies, completions, acknowledgements) have a
    // connection without BullMQ's scripts: ioredis copies every script of a connection onto each
    // MULTI or pipeline made on it, which cost ≈ 9 % of a worker's CPU on the shared one.
    const records = withScripts(connectRedis(config.redis, { ...BACKGROUND_OPTIONS, enableAutoPipelining: true }, 'persona-relay:records'))
    for (const client of [connection, records]) {
      client.on('error', () => {
        // Reported once by the request path's connection (store/redis.ts); workers wait for Redis.
      })
    }
    const bodies = new EventBodies(records, config.redis.layout, config.dedupeTtlSeconds)
    const completions = new Completions(records, config.redis.layout, Math.ceil(config.delivery.historyHours * 3600))
    const queues = new Map<string, DeliveryQueue>()
    const controls = new Map<string, SubscriberControl>()
    for (const subscriber of config.subscribers) {
      const queue = createQueue(subscriber.name, connection, keys.queuePrefix(subscriber.name), app.queueTelemetry)
      queues.set(subscriber.name, queue)
      controls.set(subscriber.name, new SubscriberControl({
        subscriber, queue, redis: records, keys, probeIntervalMs: config.delivery.probeIntervalMs, log: app.log
      }))
    }
    const jobOptions = new Map(config.subscribers.map((subscriber) => [subscriber.name, deliveryJobOptions(subscriber, config.delivery)]))
    const outcomes = new Outcomes({
      redis: records,
      bodies,
      completions,
      queues,
      controls,
      jobOptions: (subscriber) => jobOptions.get(subscriber) ?? {},
      deadLetterRetentionSeconds: config.delivery.deadLetterRetentionDays * 86_400,
      keys: app.eventStore.keys,
      metrics: app.metrics,
      replicaWait: { replicas: config.redis.waitReplicas, timeoutMs: config.redis.waitTimeoutMs }
    })
    app.metrics.observeQueues({
      subscribers: () => [...queues.keys()],
      counts: (name) => deliveryCounts(queues.get(name)!, completions, name, QUEUE_STATES),
      oldestWaitingMs: (name) => oldestWaitingMs(queues.get(name)!),
      paused: (name) => queues.get(name)!.isPaused()
    })

    const workers: Worker[] = []
    let fanouts: Fanout[] = []
    let stopMaintenance: () => Promise<void> = async () => {}
    let activity: Activity | undefined
    if (delivers) {
      const slots = new Map(config.subscribers.map((subscriber) => [subscriber.name, new Slots(subscriber.concurrency)]))
      const rateLimits = new Map(config.subscribers.flatMap((subscriber) => subscriber.rateLimit
        ? [[subscriber.name, new RateLimit(records, app.eventStore.keys.subscriber(subscriber.name).rate, subscriber.rateLimit.intervalMs)] as const]
        : []))
      activity = new Activity(records, app.eventStore.keys)
      const context = { log: app.log, metrics: app.metrics, tracer: app.tracer, activity }
      const ordering = new Ordering(records, app.eventStore.keys, config.dedupeTtlSeconds)
      const workerOptions = new Map<string, RetryWorkerOptions>()
      for (const subscriber of config.subscribers) {
        const options: RetryWorkerOptions = {
          subscriber,
          queue: queues.get(subscriber.name)!,
          connection,
          prefix: keys.queuePrefix(subscriber.name),
          telemetry: app.queueTelemetry,
          bodies,
          outcomes,
          slots: slots.get(subscriber.name)!,
          rateLimit: rateLimits.get(subscriber.name),
          ordering,
          ...context
        }
        workerOptions.set(subscriber.name, options)
        const worker = createRetryWorker(options)
        worker.on('error', (error) => app.log.warn({ subscriber: subscriber.name, err: { message: error.message } }, 'delivery worker error'))
        workers.push(worker)
      }
      // An entry waits unacknowledged while its first attempts run, which must not look abandoned;
      // past that, it returns like a crashed worker's jobs, after the lock duration.
      const abandonedAfterMs = Math.max(
        0, ...config.subscribers.map((subscriber) => Math.max(subscriber.lockDurationMs, subscriber.timeoutMs * 2))
      ) || ABANDONED_AFTER_MS
      const firstAttempts = new FirstAttempts({
        subscribers: config.subscribers, queues, slots, rateLimits, connection: records, keys: app.eventStore.keys, outcomes, context
      })
      for (const control of controls.values()) control.onChange(() => firstAttempts.forgetPauseFlags())
      const redaction = new Redaction({ redis: records, keys, bodies, queues, log: app.log })
      const orderingWindows = new Map(config.subscribers.flatMap((subscriber) => subscriber.ordering ? [[subscriber.name, subscriber.ordering.windowMs] as const] : []))
      // One reader per intake partition, each on a connection of its own, as each blocks in XREADGROUP.
      fanouts = keys.partitions.map((partition) => {
        const fanoutConnection = connectRedis(config.redis, BACKGROUND_OPTIONS, 'persona-relay:fanout')
        fanoutConnection.on('error', () => undefined)
        return new Fanout({
          connection: fanoutConnection,
          streamKey: keys.intake(partition),
          subscribers: new Set(queues.keys()),
          bodies,
          outcomes,
          firstAttempts,
          redaction,
          orderingWindows,
          ordering,
          acknowledgeConnection: records,
          log: app.log,
          abandonedAfterMs
        })
      })
      for (const fanout of fanouts) fanout.start()
      stopMaintenance = startMaintenance({
        controls: config.subscribers.map((subscriber) => ({
          control: controls.get(subscriber.name)!,
          probe: probeAttempt(workerOptions.get(subscriber.name)!)
        })),
        queues,
        completions,
        outcomes,
        delivery: config.delivery,
        log: app.log
      })
    }

    app.decorate('delivery', {
      queues,
      completions,
      controls,
      isRunning: () => fanouts.every((fanout) => fanout.isRunning()) && workers.every((worker) => worker.isRunning())
    })

    app.addHook('onClose', async () => {
      await Promise.all([...fanouts.map((fanout) => fanout.stop()), stopMaintenance()])
      // close() waits for attempts in flight; anything cut off by a hard stop returns to the queue
      // when its lock expires.
      await Promise.all(workers.map((worker) => worker.close()))
      await activity?.close()
      await Promise.all([...queues.values()].map((queue) => queue.close()))
      await Promise.all([connection, records].map(closeRedis))
    })
  },
  { name: 'delivery', dependencies: ['event-store', 'metrics'] }
)
