import { Worker, type Job } from 'bullmq'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { SubscriberConfig } from '../config/index.js'
import { queueName, type DeliveryJobData } from './job.js'
import { retryDelayMs } from './retry-schedule.js'
import { sendDelivery, type AttemptResult } from './sender.js'

/** Thrown for an attempt that did not end in a 2xx, so that BullMQ schedules the next one. */
export class DeliveryAttemptError extends Error {
  constructor(readonly result: AttemptResult) {
    super(result.status !== undefined ? `subscriber answered HTTP ${result.status}` : `delivery failed: ${result.errorClass}`)
    this.name = 'DeliveryAttemptError'
  }
}

export interface DeliveryWorkerOptions {
  subscriber: SubscriberConfig
  connection: Redis
  prefix: string
  log: FastifyBaseLogger
}

export function createDeliveryWorker({ subscriber, connection, prefix, log }: DeliveryWorkerOptions) {
  const processor = async (job: Job<DeliveryJobData>) => {
    const attempt = job.attemptsMade + 1
    const body = job.data.body
    if (body === undefined) {
      // Only a completed delivery loses its body, and a completed job is never processed again.
      throw new Error('delivery has no body')
    }
    const result = await sendDelivery(subscriber, job.data, body, attempt)
    log.info(
      {
        subscriber: subscriber.name,
        eventId: job.data.eventId,
        eventName: job.data.eventName,
        attempt,
        outcome: result.outcome,
        status: result.status,
        errorClass: result.errorClass,
        durationMs: result.durationMs
      },
      'delivery attempt'
    )
    if (result.outcome !== 'success') throw new DeliveryAttemptError(result)
    // Persona bodies are personal data: once the subscriber has it, only the metadata stays.
    const { body: _delivered, ...metadata } = job.data
    await job.updateData(metadata)
    return { status: result.status, durationMs: result.durationMs }
  }

  return new Worker<DeliveryJobData>(queueName(subscriber.name), processor, {
    connection,
    prefix,
    concurrency: subscriber.concurrency,
    // A lock shorter than the slowest attempt would let a second worker take a delivery still in flight.
    lockDuration: Math.max(30_000, subscriber.timeoutMs * 2),
    settings: {
      backoffStrategy: (attemptsMade: number) => retryDelayMs(subscriber.retrySchedule, attemptsMade)
    }
  })
}
