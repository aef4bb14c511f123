import type { SubscriberConfig, Config } from '../config/index.js'
import { KEPT_ATTEMPTS } from './attempts.js'
import type { AttemptReport } from './worker.js'

/** What one delivery carries: metadata only, the body is stored once per event (store/event-bodies.ts). */
export interface DeliveryJobData {
  eventId: string
  eventName: string
  createdAt: string
  receivedAt: string
  source: string
  /** The circuit breaker's probe already delivered it: the worker completes it without sending. */
  deliveredByProbe?: true
  /** Fan-out's own first attempt, which failed: the worker records it as the job's first attempt. */
  immediateAttempt?: AttemptReport
}

/** The failed immediate attempt a job was made for, until a worker has recorded it as the job's first. */
export function pendingImmediateAttempt(job: { attemptsMade: number; data: DeliveryJobData }): AttemptReport | undefined {
  return job.attemptsMade === 0 ? job.data.immediateAttempt : undefined
}

/** Once recorded, the attempt leaves the job: a manual retry resets the attempt count, and must then send. */
export function withoutImmediateAttempt({ immediateAttempt, ...data }: DeliveryJobData): DeliveryJobData {
  return data
}

export function queueName(subscriberName: string): string {
  return `delivery-${subscriberName}`
}

export const BACKOFF_TYPE = 'schedule'

export function deliveryJobOptions(subscriber: SubscriberConfig, retention: Config['delivery']) {
  return {
    attempts: subscriber.maxAttempts,
    backoff: { type: BACKOFF_TYPE },
    keepLogs: KEPT_ATTEMPTS,
    // BullMQ counts whole seconds and `age: 0` removes a job the moment it finishes: rounding up keeps
    // a sub-second retention for at least as long as asked, and the sweep removes it on time.
    removeOnComplete: { age: Math.ceil(retention.historyHours * 3600) },
    removeOnFail: { age: Math.ceil(retention.deadLetterRetentionDays * 86400) }
  }
}
