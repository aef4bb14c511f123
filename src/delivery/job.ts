import type { SubscriberConfig, Config } from '../config/index.js'

/** What one delivery carries; the body is dropped once the subscriber has it. */
export interface DeliveryJobData {
  eventId: string
  eventName: string
  createdAt: string
  receivedAt: string
  source: string
  body?: string
}

export function queueName(subscriberName: string): string {
  return `delivery-${subscriberName}`
}

export const BACKOFF_TYPE = 'schedule'

export function deliveryJobOptions(subscriber: SubscriberConfig, retention: Config['delivery']) {
  return {
    attempts: subscriber.maxAttempts,
    backoff: { type: BACKOFF_TYPE },
    removeOnComplete: { age: Math.round(retention.historyHours * 3600) },
    removeOnFail: { age: Math.round(retention.deadLetterRetentionDays * 86400) }
  }
}
