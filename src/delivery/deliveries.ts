import { setImmediate as nextTurn } from 'node:timers/promises'
import type { Job, JobType, Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import { deliveryHistory, type AttemptRecord } from './attempts.js'
import type { DeliveredRecord, DeliveredRecords } from './delivered-records.js'
import type { DeliveryJobData } from './job.js'
import { EXPIRED_REASON, GONE_REASON } from './worker.js'

function deadLetterReason(failedReason: string): 'gone' | 'expired' | 'exhausted' {
  if (failedReason === GONE_REASON) return 'gone'
  return failedReason === EXPIRED_REASON ? 'expired' : 'exhausted'
}

export const DELIVERY_STATES = ['pending', 'delayed', 'active', 'completed', 'failed', 'paused'] as const
export type DeliveryState = (typeof DELIVERY_STATES)[number]

export interface DeliveryView {
  id: string
  subscriber: string
  eventId: string
  eventName: string
  state: DeliveryState | 'unknown'
  attemptsMade: number
  maxAttempts: number
  queuedAt: string
  finishedAt?: string
  nextAttemptAt?: string
  failedReason?: string
  /** Why a failed delivery stopped: a 410, its body expired before it could be sent, or every attempt spent. */
  deadLetterReason?: 'gone' | 'expired' | 'exhausted'
  attempts: AttemptRecord[]
}

/** `<SUBSCRIBER>.<event id>`: subscriber names have no dot, event ids neither. */
export function deliveryId(subscriber: string, eventId: string): string {
  return `${subscriber}.${eventId}`
}

export function parseDeliveryId(id: string): { subscriber: string; eventId: string } | undefined {
  const dot = id.indexOf('.')
  if (dot <= 0 || dot === id.length - 1) return undefined
  return { subscriber: id.slice(0, dot), eventId: id.slice(dot + 1) }
}

const BULLMQ_TYPES: Record<Exclude<DeliveryState, 'paused'>, JobType[]> = {
  pending: ['wait', 'prioritized', 'waiting-children'],
  delayed: ['delayed'],
  active: ['active'],
  completed: ['completed'],
  failed: ['failed']
}

function stateOf(bullmqState: string, queuePaused: boolean): DeliveryView['state'] {
  switch (bullmqState) {
    case 'waiting':
    case 'wait':
    case 'prioritized':
    case 'waiting-children':
      return queuePaused ? 'paused' : 'pending'
    case 'delayed':
      return queuePaused ? 'paused' : 'delayed'
    case 'active':
    case 'completed':
    case 'failed':
      return bullmqState
    default:
      return 'unknown'
  }
}

/**
 * When a delayed delivery is due: its score in the delayed set, which BullMQ shifts left by 12 bits
 * to keep an ordering counter. The job's own `timestamp + delay` is off by every earlier attempt.
 */
async function dueAt(redis: Redis, queue: Queue<DeliveryJobData>, jobId: string): Promise<number | undefined> {
  const score = await redis.zscore(queue.keys.delayed!, jobId)
  return score === null ? undefined : Math.floor(Number(score) / 0x1000)
}

async function toView(
  redis: Redis,
  queue: Queue<DeliveryJobData>,
  subscriber: string,
  job: Job<DeliveryJobData>,
  state: DeliveryView['state']
): Promise<DeliveryView> {
  const [{ logs }, due] = await Promise.all([
    queue.getJobLogs(job.id!, 0, -1, true),
    state === 'delayed' || state === 'paused' ? dueAt(redis, queue, job.id!) : undefined
  ])
  const failed = state === 'failed'
  return {
    id: deliveryId(subscriber, job.id!),
    subscriber,
    eventId: job.data.eventId,
    eventName: job.data.eventName,
    state,
    attemptsMade: job.attemptsMade,
    maxAttempts: job.opts.attempts ?? 1,
    // When the relay took the event, as for a delivery that never needed a job: a job made for a
    // failed immediate attempt is younger than the attempt.
    queuedAt: job.data.receivedAt || new Date(job.timestamp).toISOString(),
    ...(job.finishedOn ? { finishedAt: new Date(job.finishedOn).toISOString() } : {}),
    ...(due !== undefined ? { nextAttemptAt: new Date(due).toISOString() } : {}),
    ...(failed && job.failedReason ? { failedReason: job.failedReason } : {}),
    ...(failed ? { deadLetterReason: deadLetterReason(job.failedReason) } : {}),
    attempts: deliveryHistory(logs, job.returnvalue)
  }
}

function deliveredView(subscriber: string, record: DeliveredRecord): DeliveryView {
  return {
    id: deliveryId(subscriber, record.eventId),
    subscriber,
    eventId: record.eventId,
    eventName: record.eventName,
    state: 'completed',
    attemptsMade: 1,
    maxAttempts: record.maxAttempts,
    queuedAt: record.queuedAt,
    finishedAt: record.finishedAt,
    attempts: [record.attempt]
  }
}

/**
 * One subscriber's delivery of one event, or undefined when there is none (or no longer): its job,
 * or the record of an immediate attempt that completed it without one.
 */
export async function getDelivery(
  redis: Redis,
  queue: Queue<DeliveryJobData>,
  delivered: DeliveredRecords,
  subscriber: string,
  eventId: string
): Promise<DeliveryView | undefined> {
  const job = await queue.getJob(eventId)
  if (!job) {
    const record = await delivered.get(subscriber, eventId)
    return record ? deliveredView(subscriber, record) : undefined
  }
  const [state, paused] = await Promise.all([job.getState(), queue.isPaused()])
  return toView(redis, queue, subscriber, job, stateOf(state, paused))
}

/**
 * A subscriber's deliveries per BullMQ state; completed ones include those completed by their
 * immediate attempt, which never were jobs.
 */
export async function deliveryCounts(
  queue: Queue<DeliveryJobData>,
  delivered: DeliveredRecords,
  subscriber: string,
  states: readonly JobType[]
): Promise<Record<string, number>> {
  const [counts, deliveredAtOnce] = await Promise.all([queue.getJobCounts(...states), delivered.count(subscriber)])
  return { ...counts, completed: (counts.completed ?? 0) + deliveredAtOnce }
}

export interface ListQuery {
  state: DeliveryState
  limit: number
  offset: number
}

/** A delivery found by a listing, with the time it sorts by; its full view is read only if it is on the page. */
interface Listed {
  time: number
  view: () => Promise<DeliveryView>
}

/**
 * Deliveries of several subscribers in one state, newest first: by finish time for finished ones
 * (completed jobs and immediately completed deliveries alike); waiting ones in their queue's own
 * order (latest due first when delayed), merged by queue time. Each list is read up to
 * offset + limit, so deep pages cost more.
 */
export async function listDeliveries(
  redis: Redis,
  queues: ReadonlyMap<string, Queue<DeliveryJobData>>,
  delivered: DeliveredRecords,
  query: ListQuery
): Promise<{ items: DeliveryView[]; more: boolean }> {
  const types = query.state === 'paused' ? [...BULLMQ_TYPES.pending, ...BULLMQ_TYPES.delayed] : BULLMQ_TYPES[query.state]
  const wanted = query.offset + query.limit
  const lists: Listed[][] = []
  for (const [subscriber, queue] of queues) {
    const paused = await queue.isPaused()
    if ((query.state === 'paused') !== paused && ['pending', 'delayed', 'paused'].includes(query.state)) continue
    // One list per BullMQ type, each in BullMQ's own order: newest first, one more than needed.
    for (const type of types) {
      const jobs = await queue.getJobs([type], 0, wanted, false)
      lists.push(
        jobs
          .filter((job) => job?.id)
          .map((job) => ({ time: job.finishedOn ?? job.timestamp, view: () => toView(redis, queue, subscriber, job, query.state) }))
      )
    }
    if (query.state === 'completed') {
      const records = await delivered.newest(subscriber, wanted + 1)
      lists.push(records.map((record) => ({ time: Date.parse(record.finishedAt), view: async () => deliveredView(subscriber, record) })))
    }
  }
  const found = mergeNewestFirst(lists, wanted + 1)
  const page = found.slice(query.offset, wanted)
  const items = await Promise.all(page.map((listed) => listed.view()))
  return { items, more: found.length > wanted }
}

/**
 * Merges lists that are each in their own order (a wait list by push time, a delayed set by due
 * time), newest head first. A sort would not do: the first n items of a merge depend only on the
 * first n of each list, so page after page neither repeats nor skips a delivery.
 */
function mergeNewestFirst(lists: readonly Listed[][], count: number): Listed[] {
  const heads = lists.map(() => 0)
  const merged: Listed[] = []
  while (merged.length < count) {
    let newest: Listed | undefined
    let from = -1
    lists.forEach((list, index) => {
      const head = list[heads[index]!]
      if (head && (!newest || head.time > newest.time)) {
        newest = head
        from = index
      }
    })
    if (!newest) break
    merged.push(newest)
    heads[from]! += 1
  }
  return merged
}

/** Re-queues one failed delivery with a fresh attempt budget; its history stays. */
export async function retryDelivery(job: Job<DeliveryJobData>): Promise<void> {
  await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true })
}

const RETRY_BATCH = 100

/**
 * Re-queues every failed delivery of a queue that failed within [sinceMs, untilMs], a batch at a
 * time with a turn of the event loop in between, so that a large backlog does not stall intake.
 * untilMs must not be in the future: a retried delivery that fails again would match again.
 */
export async function retryFailedDeliveries(
  queue: Queue<DeliveryJobData>,
  redis: Redis,
  sinceMs: number,
  untilMs: number
): Promise<number> {
  let retried = 0
  let skipped = 0
  for (;;) {
    const ids = await redis.zrangebyscore(queue.keys.failed!, sinceMs, untilMs, 'LIMIT', skipped, RETRY_BATCH)
    if (ids.length === 0) return retried
    for (const id of ids) {
      const job = await queue.getJob(id)
      try {
        if (!job) throw new Error('gone')
        await retryDelivery(job)
        retried += 1
      } catch {
        // Removed meanwhile, its id left in the set: step over it. Retried by someone else, it has
        // left the set, and counting it would step over a delivery still to retry.
        if ((await redis.zscore(queue.keys.failed!, id)) !== null) skipped += 1
      }
    }
    await nextTurn()
  }
}
