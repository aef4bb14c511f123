import { Queue, type Job, type Telemetry } from 'bullmq'
import type { ReplicaWait } from '../store/event-store.js'
import { repliesOf, type RedisClient } from '../store/redis.js'
import type { Config, SubscriberConfig } from '../config/index.js'
import { KEPT_ATTEMPTS, parseAttemptLog } from './attempts.js'
import type { AttemptRecord, DeliveryData } from './types.js'

/**
 * BullMQ as the engine's retry and dead-letter queue, one queue per subscriber. This is the only
 * module that knows BullMQ's own key layout (the meta hash, the delayed and failed sets); the rest
 * of the relay uses BullMQ's public API or asks here.
 */
export type DeliveryQueue = Queue<DeliveryData>
export type DeliveryJob = Job<DeliveryData>

export function queueName(subscriberName: string): string {
  return `delivery-${subscriberName}`
}

export function createQueue(subscriberName: string, connection: RedisClient, prefix: string, telemetry?: Telemetry): DeliveryQueue {
  const queue = new Queue<DeliveryData>(queueName(subscriberName), { connection, prefix, ...(telemetry ? { telemetry } : {}) })
  // Without a listener BullMQ prints every reconnection error of the shared connection to stderr.
  queue.on('error', () => undefined)
  return queue
}

export function deliveryJobOptions(subscriber: SubscriberConfig, retention: Config['delivery']) {
  return {
    attempts: subscriber.maxAttempts,
    backoff: { type: 'schedule' },
    keepLogs: KEPT_ATTEMPTS,
    // A completed delivery lives in the completion store (store/completions.ts), written before its
    // job completes: the job itself is done with.
    removeOnComplete: true,
    // BullMQ counts whole seconds and `age: 0` removes a job the moment it fails: rounding up keeps
    // a sub-second retention for at least as long as asked, and the sweep removes it on time.
    removeOnFail: { age: Math.ceil(retention.deadLetterRetentionDays * 86400) }
  }
}

/**
 * With REDIS_WAIT_REPLICAS, a queue's new jobs are on its node's replicas before the intake entry
 * that made them is acknowledged: otherwise a failover could keep the acknowledgement and lose the
 * job. WAIT covers the writes of its own connection, the queue's; on a cluster the pipeline's key
 * sends it to the queue's node. Too few confirmations throw: the entry stays, and its jobs are
 * added again (the same ids) when it is taken over.
 */
export async function confirmReplicas(queue: DeliveryQueue, { replicas, timeoutMs }: ReplicaWait): Promise<void> {
  if (replicas === 0) return
  // The client createQueue gave it, wrapped but not duplicated by BullMQ: its sockets made the writes.
  const client = queue.opts.connection as RedisClient
  const [, confirmed] = repliesOf(await client.pipeline().exists(queue.keys.meta!).wait(replicas, timeoutMs).exec())
  if (Number(confirmed) < replicas) throw new Error(`${String(confirmed)} of ${replicas} replicas confirmed the queued deliveries`)
}

/** Whether the subscriber's queue is paused (BullMQ's meta hash): one command, for the caller's connection to pipeline. */
export async function isQueuePaused(redis: RedisClient, queue: DeliveryQueue): Promise<boolean> {
  return (await redis.hexists(queue.keys.meta!, 'paused')) === 1
}

/**
 * When a delayed delivery is due: its score in the delayed set, which BullMQ shifts left by 12 bits
 * to keep an ordering counter. The job's own `timestamp + delay` is off by every earlier attempt.
 */
export async function dueAt(redis: RedisClient, queue: DeliveryQueue, jobId: string): Promise<number | undefined> {
  const score = await redis.zscore(queue.keys.delayed!, jobId)
  return score === null ? undefined : Math.floor(Number(score) / 0x1000)
}

/** Dead letters of a queue that failed within [sinceMs, untilMs], in failure order, a page at a time. */
export async function failedIdsBetween(redis: RedisClient, queue: DeliveryQueue, sinceMs: number, untilMs: number, offset: number, count: number) {
  return await redis.zrangebyscore(queue.keys.failed!, sinceMs, untilMs, 'LIMIT', offset, count)
}

export async function isDeadLetter(redis: RedisClient, queue: DeliveryQueue, jobId: string): Promise<boolean> {
  return (await redis.zscore(queue.keys.failed!, jobId)) !== null
}

/**
 * Whether the job still owes BullMQ the first attempt fan-out made: until its worker has taken it
 * as the job's first (worker.ts), BullMQ counts none.
 */
export function firstAttemptPending(job: DeliveryJob): boolean {
  return job.data.firstAttempt !== undefined && job.attemptsMade === 0 && !job.data.replayed
}

/** Attempts made so far, the first attempt fan-out made included. */
export function attemptsMade(job: DeliveryJob): number {
  return job.attemptsMade + (firstAttemptPending(job) ? 1 : 0)
}

/** Re-queues a dead letter with a fresh attempt budget; its history stays. */
export async function replay(job: DeliveryJob): Promise<void> {
  if (job.data.firstAttempt && !job.data.replayed) await job.updateData({ ...job.data, replayed: true })
  await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true })
}

/**
 * A job's attempt history, in the order the attempts began: its log rows, and the first attempt
 * fan-out made until the worker has logged it (a probe may log its own before that).
 */
export async function jobHistory(queue: DeliveryQueue, job: DeliveryJob): Promise<AttemptRecord[]> {
  const { logs } = await queue.getJobLogs(job.id!, 0, -1, true)
  const first = firstAttemptPending(job) && job.data.firstAttempt ? [job.data.firstAttempt] : []
  return [...first, ...parseAttemptLog(logs)].sort((a, b) => a.at.localeCompare(b.at))
}

/** Deliveries of these events that wait for a retry are due now: what they find then decides (redaction.ts). */
export async function promoteDelayed(queue: DeliveryQueue, eventIds: readonly string[]): Promise<void> {
  for (const eventId of eventIds) await promoteIfDue(queue, eventId, 0)
}

/**
 * An ordered lane's next delivery is made due now (ordering.ts), unless it still waits out its
 * ordering window (it arrived less than `windowMs` ago): earlier events may yet arrive.
 */
export async function promoteIfDue(queue: DeliveryQueue, eventId: string, windowMs: number): Promise<void> {
  const job = await queue.getJob(eventId)
  if (job && Date.now() - job.timestamp >= windowMs && (await job.isDelayed())) await job.promote().catch(() => undefined)
}

/** How long the oldest delivery waiting to be sent has waited; 0 when none waits. */
export async function oldestWaitingMs(queue: DeliveryQueue): Promise<number> {
  const [oldest] = await queue.getJobs(['wait'], 0, 0, true)
  return oldest ? Math.max(Date.now() - oldest.timestamp, 0) : 0
}
