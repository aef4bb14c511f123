import fp from 'fastify-plugin'
import { Queue, type Worker } from 'bullmq'
import type { Config } from '../config/index.js'
import { BACKGROUND_OPTIONS, connectRedis } from '../store/redis.js'
import { EventBodies } from '../store/event-bodies.js'
import { DeliveredRecords } from './delivered-records.js'
import { ABANDONED_AFTER_MS, Fanout } from './fanout.js'
import { ImmediateDelivery } from './immediate.js'
import { deliveryJobOptions, queueName, type DeliveryJobData } from './job.js'
import { startMaintenance } from './maintenance.js'
import { Slots } from './slots.js'
import { SubscriberControl } from './subscriber-control.js'
import { attemptDelivery, createDeliveryWorker } from './worker.js'

export interface Delivery {
  queues: ReadonlyMap<string, Queue<DeliveryJobData>>
  /** Deliveries completed by their immediate attempt, which have no job. */
  delivered: DeliveredRecords
  controls: ReadonlyMap<string, SubscriberControl>
  isRunning(): boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    delivery: Delivery
  }
}

/** Fan-out and one BullMQ queue and worker per subscriber, so a slow subscriber delays only itself. */
export const deliveryPlugin = fp<{ config: Config }>(
  async (app, { config }) => {
    const prefix = config.redis.prefix
    // An intake-only instance keeps the queues (for the admin API) but leaves delivery to workers.
    const delivers = config.role !== 'intake'
    const connection = connectRedis(config.redis.url, BACKGROUND_OPTIONS, 'persona-relay:delivery')
    // The relay's own reads and transactions (bodies, delivered records, acknowledgements) have a
    // connection without BullMQ's scripts: ioredis copies every script of a connection onto each
    // MULTI or pipeline made on it, which cost ≈ 9 % of a worker's CPU on the shared one.
    const records = connectRedis(config.redis.url, BACKGROUND_OPTIONS, 'persona-relay:records')
    for (const client of [connection, records]) {
      client.on('error', () => {
        // Reported once by the request path's connection (store/redis.ts); workers wait for Redis.
      })
    }
    const context = { log: app.log, metrics: app.metrics, bodies: new EventBodies(records, prefix) }
    const queues = new Map<string, Queue<DeliveryJobData>>()
    const controls = new Map<string, SubscriberControl>()
    const workers: Worker[] = []
    const delivered = new DeliveredRecords(records, prefix)
    const slots = new Map(config.subscribers.map((subscriber) => [subscriber.name, new Slots(subscriber.concurrency)]))
    for (const subscriber of config.subscribers) {
      const queue = new Queue<DeliveryJobData>(queueName(subscriber.name), { connection, prefix })
      // Without a listener BullMQ prints every reconnection error of the shared connection to stderr.
      queue.on('error', () => undefined)
      const control = new SubscriberControl({
        subscriber, queue, redis: connection, prefix, probeIntervalMs: config.delivery.probeIntervalMs, log: app.log
      })
      queues.set(subscriber.name, queue)
      controls.set(subscriber.name, control)
      if (!delivers) continue
      const worker = createDeliveryWorker({
        subscriber, connection, prefix, control, slots: slots.get(subscriber.name)!, deadLetterRetentionSeconds: config.delivery.deadLetterRetentionDays * 86_400, ...context
      })
      worker.on('error', (error) => app.log.warn({ subscriber: subscriber.name, err: { message: error.message } }, 'delivery worker error'))
      workers.push(worker)
    }
    const jobOptions = new Map(
      config.subscribers.map((subscriber) => [subscriber.name, deliveryJobOptions(subscriber, config.delivery)])
    )
    let fanout: Fanout | undefined
    let stopMaintenance: () => Promise<void> = async () => {}
    if (delivers) {
      const fanoutConnection = connectRedis(config.redis.url, BACKGROUND_OPTIONS, 'persona-relay:fanout')
      fanoutConnection.on('error', () => undefined)
      const jobOptionsOf = (subscriber: string) => jobOptions.get(subscriber) ?? {}
      const immediate = config.delivery.immediate && new ImmediateDelivery({
        subscribers: config.subscribers,
        queues,
        controls,
        slots,
        jobOptions: jobOptionsOf,
        connection: records,
        bodyKey: app.eventStore.keys.body,
        delivered,
        context
      })
      // An entry waits unacknowledged while its immediate attempts run, which must not look abandoned;
      // past that, it returns like a crashed worker's jobs, after the lock duration.
      const abandonedAfterMs = Math.max(
        0, ...config.subscribers.map((subscriber) => Math.max(subscriber.lockDurationMs, subscriber.timeoutMs * 2))
      ) || ABANDONED_AFTER_MS
      fanout = new Fanout({
        connection: fanoutConnection,
        streamKey: app.eventStore.keys.intake,
        queues,
        jobOptions: jobOptionsOf,
        bodies: context.bodies,
        log: app.log,
        ...(immediate ? { immediate: { delivery: immediate, acknowledgeConnection: records } } : {}),
        abandonedAfterMs
      })
      fanout.start()
      stopMaintenance = startMaintenance({
        controls: config.subscribers.map((subscriber) => ({
          control: controls.get(subscriber.name)!,
          probe: (job) => attemptDelivery(subscriber, job, context, true)
        })),
        queues,
        bodies: context.bodies,
        delivered,
        delivery: config.delivery,
        log: app.log
      })
    }

    app.decorate('delivery', {
      queues,
      delivered,
      controls,
      isRunning: () => !fanout || (fanout.isRunning() && workers.every((worker) => worker.isRunning()))
    })

    app.addHook('onClose', async () => {
      await Promise.all([fanout?.stop(), stopMaintenance()])
      // close() waits for attempts in flight; anything cut off by a hard stop returns to the queue
      // when its lock expires.
      await Promise.all(workers.map((worker) => worker.close()))
      await Promise.all([...queues.values()].map((queue) => queue.close()))
      await Promise.all([connection, records].map((client) => client.quit().catch(() => client.disconnect())))
    })
  },
  { name: 'delivery', dependencies: ['event-store', 'metrics'] }
)
