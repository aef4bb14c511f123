import fp from 'fastify-plugin'
import { Queue, type Worker } from 'bullmq'
import type { Config } from '../config/index.js'
import { BACKGROUND_OPTIONS, connectRedis } from '../store/redis.js'
import { Fanout } from './fanout.js'
import { deliveryJobOptions, queueName, type DeliveryJobData } from './job.js'
import { createDeliveryWorker } from './worker.js'

export interface Delivery {
  queues: ReadonlyMap<string, Queue<DeliveryJobData>>
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
    const connection = connectRedis(config.redis.url, BACKGROUND_OPTIONS, 'persona-relay:delivery')
    connection.on('error', () => {
      // Reported once by the request path's connection (store/redis.ts); workers wait for Redis.
    })
    const queues = new Map(
      config.subscribers.map((subscriber) => {
        const queue = new Queue<DeliveryJobData>(queueName(subscriber.name), { connection, prefix })
        // Without a listener BullMQ prints every reconnection error of the shared connection to stderr.
        queue.on('error', () => undefined)
        return [subscriber.name, queue] as const
      })
    )
    const jobOptions = new Map(
      config.subscribers.map((subscriber) => [subscriber.name, deliveryJobOptions(subscriber, config.delivery)])
    )
    const fanoutConnection = connectRedis(config.redis.url, BACKGROUND_OPTIONS, 'persona-relay:fanout')
    fanoutConnection.on('error', () => undefined)
    const fanout = new Fanout({
      connection: fanoutConnection,
      streamKey: app.eventStore.keys.intake,
      queues,
      jobOptions: (subscriber) => jobOptions.get(subscriber) ?? {},
      log: app.log
    })
    const workers: Worker[] = config.subscribers.map((subscriber) => {
      const worker = createDeliveryWorker({ subscriber, connection, prefix, log: app.log })
      worker.on('error', (error) => app.log.warn({ subscriber: subscriber.name, err: { message: error.message } }, 'delivery worker error'))
      return worker
    })
    fanout.start()

    app.decorate('delivery', {
      queues,
      isRunning: () => fanout.isRunning() && workers.every((worker) => worker.isRunning())
    })

    app.addHook('onClose', async () => {
      await fanout.stop()
      // close() waits for attempts in flight; anything cut off by a hard stop returns to the queue
      // when its lock expires.
      await Promise.all(workers.map((worker) => worker.close()))
      await Promise.all([...queues.values()].map((queue) => queue.close()))
      await connection.quit().catch(() => connection.disconnect())
    })
  },
  { name: 'delivery', dependencies: ['event-store'] }
)
