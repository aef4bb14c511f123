import { setImmediate as nextTurn } from 'node:timers/promises'
import type { JobType } from 'bullmq'
import type { RedisClient } from '../store/redis.js'
import type { CompletedRecord, Completions } from '../store/completions.js'
import { attemptsMade, dueAt, failedIdsBetween, isDeadLetter, jobHistory, replay, type DeliveryJob, type DeliveryQueue } from './queue.js'
import { deliveryId, type DeadLetterReason, type DeliveryState, type DeliveryView } from './types.js'
import { EXPIRED_REASON, GONE_REASON, REDACTED_REASON } from './worker.js'

// The read model of deliveries, for the admin API and the metrics. Each state is kept in one place:
// a completed delivery in the completion store (store/completions.ts), one that waits, runs or is a
// dead letter as its queue's job.

function deadLetterReason(failedReason: string): DeadLetterReason {
  if (failedReason === GONE_REASON) return 'gone'
  if (failedReason === REDACTED_REASON) return 'redacted'
  return failedReason === EXPIRED_REASON ? 'expired' : 'exhausted'
}

const BULLMQ_TYPES: Record<Exclude<DeliveryState, 'paused' | 'completed'>, JobType[]> = {
  pending: ['wait', 'prioritized', 'waiting-children'],
  delayed: ['delayed'],
  active: ['active'],
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

async function toView(
  redis: RedisClient,
  queue: DeliveryQueue,
  subscriber: string,
  job: DeliveryJob,
  state: DeliveryView['state']
): Promise<DeliveryView> {
  const [attempts, due] = await Promise.all([
    jobHistory(queue, job),
    state === 'delayed' || state === 'paused' ? dueAt(redis, queue, job.id!) : undefined
  ])
  const failed = state === 'failed'
  return {
    id: deliveryId(subscriber, job.id!),
    subscriber,
    eventId: job.data.eventId,
    eventName: job.data.eventName,
    state,
    attemptsMade: attemptsMade(job),
    maxAttempts: job.opts.attempts ?? 1,
    // When the relay took the event, as for a delivery that never needed a job: a job made for a
    // failed first attempt is younger than the attempt.
    queuedAt: job.data.receivedAt || new Date(job.timestamp).toISOString(),
    ...(job.finishedOn ? { finishedAt: new Date(job.finishedOn).toISOString() } : {}),
    ...(due !== undefined ? { nextAttemptAt: new Date(due).toISOString() } : {}),
    ...(failed && job.failedReason ? { failedReason: job.failedReason } : {}),
    ...(failed ? { deadLetterReason: deadLetterReason(job.failedReason) } : {}),
    attempts
  }
}

function completedView(subscriber: string, record: CompletedRecord): DeliveryView {
  return {
    id: deliveryId(subscriber, record.eventId),
    subscriber,
    eventId: record.eventId,
    eventName: record.eventName,
    state: 'completed',
    // The delivering attempt's number: attempts count afresh after a replay, and probes spend none.
    attemptsMade: record.attempts.at(-1)?.attempt ?? 0,
    maxAttempts: record.maxAttempts,
    queuedAt: record.queuedAt,
    finishedAt: record.finishedAt,
    attempts: record.attempts
  }
}

/** One subscriber's delivery of one event, or undefined when there is none (or no longer). */
export async function getDelivery(
  redis: RedisClient,
  queue: DeliveryQueue,
  completions: Completions,
  subscriber: string,
  eventId: string
): Promise<DeliveryView | undefined> {
  // The state before the job: a job read first could be failed by the time its state is, and show
  // the previous attempt's reason as the dead letter's. Read after, the job is as new as its state.
  const [state, paused] = await Promise.all([queue.getJobState(eventId), queue.isPaused()])
  const job = state === 'unknown' ? undefined : await queue.getJob(eventId)
  if (!job) {
    const record = await completions.get(subscriber, eventId)
    return record ? completedView(subscriber, record) : undefined
  }
  return toView(redis, queue, subscriber, job, stateOf(state, paused))
}

/** A subscriber's deliveries per state: completed ones from the completion store, the others from its queue. */
export async function deliveryCounts(
  queue: DeliveryQueue,
  completions: Completions,
  subscriber: string,
  states: readonly JobType[]
): Promise<Record<string, number>> {
  const [counts, completed] = await Promise.all([queue.getJobCounts(...states.filter((state) => state !== 'completed')), completions.count(subscriber)])
  return { ...counts, completed }
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
 * Deliveries of several subscribers in one state, newest first: completed ones by finish time (the
 * completion store), dead letters by their failure, waiting ones in their queue's own order (latest
 * due first when delayed), merged by queue time. Each list is read up to offset + limit, so deep
 * pages cost more.
 */
export async function listDeliveries(
  redis: RedisClient,
  queues: ReadonlyMap<string, DeliveryQueue>,
  completions: Completions,
  query: ListQuery
): Promise<{ items: DeliveryView[]; more: boolean }> {
  const types = query.state === 'paused'
    ? [...BULLMQ_TYPES.pending, ...BULLMQ_TYPES.delayed]
    : query.state === 'completed' ? [] : BULLMQ_TYPES[query.state]
  const wanted = query.offset + query.limit
  const lists: Listed[][] = []
  for (const [subscriber, queue] of queues) {
    const paused = await queue.isPaused()
    if ((query.state === 'paused') !== paused && ['pending', 'delayed', 'paused'].includes(query.state)) continue
    if (query.state === 'completed') {
      const records = await completions.newest(subscriber, wanted + 1)
      lists.push(records.map((record) => ({ time: Date.parse(record.finishedAt), view: async () => completedView(subscriber, record) })))
      continue
    }
    // One list per BullMQ type, each in BullMQ's own order: newest first, one more than needed.
    for (const type of types) {
      const jobs = await queue.getJobs([type], 0, wanted, false)
      lists.push(
        jobs
          .filter((job) => job?.id)
          .map((job) => ({ time: job.finishedOn ?? job.timestamp, view: () => toView(redis, queue, subscriber, job, query.state) }))
      )
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

const RETRY_BATCH = 100

/**
 * Re-queues every failed delivery of a queue that failed within [sinceMs, untilMs], a batch at a
 * time with a turn of the event loop in between, so that a large backlog does not stall intake.
 * untilMs must not be in the future: a retried delivery that fails again would match again.
 */
export async function retryFailedDeliveries(
  queue: DeliveryQueue,
  redis: RedisClient,
  sinceMs: number,
  untilMs: number
): Promise<number> {
  let retried = 0
  let skipped = 0
  for (;;) {
    const ids = await failedIdsBetween(redis, queue, sinceMs, untilMs, skipped, RETRY_BATCH)
    if (ids.length === 0) return retried
    for (const id of ids) {
      const job = await queue.getJob(id)
      try {
        if (!job) throw new Error('gone')
        await replay(job)
        retried += 1
      } catch {
        // Removed meanwhile, its id left in the set: step over it. Retried by someone else, it has
        // left the set, and counting it would step over a delivery still to retry.
        if (await isDeadLetter(redis, queue, id)) skipped += 1
      }
    }
    await nextTurn()
  }
}
