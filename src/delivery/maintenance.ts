import type { Queue } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config/index.js'
import type { EventBodies } from '../store/event-bodies.js'
import type { DeliveredRecords } from './delivered-records.js'
import type { DeliveryJobData } from './job.js'
import type { ProbeAttempt, SubscriberControl } from './subscriber-control.js'

const CLEAN_BATCH = 1000

export interface MaintenanceOptions {
  controls: readonly { control: SubscriberControl; probe: ProbeAttempt }[]
  queues: ReadonlyMap<string, Queue<DeliveryJobData>>
  bodies: EventBodies
  delivered: DeliveredRecords
  delivery: Config['delivery']
  log: FastifyBaseLogger
}

/**
 * BullMQ removes old finished jobs only when other jobs finish, so a quiet queue would keep its
 * history past its retention: a sweep enforces DELIVERY_HISTORY_HOURS and
 * DEAD_LETTER_RETENTION_DAYS on a timer. A dead letter removed lets go of its event's body, which
 * goes once no other delivery of the event needs it.
 */
export async function sweepRetention(
  queue: Queue<DeliveryJobData>,
  delivery: Config['delivery'],
  releaseBodies: (eventIds: readonly string[]) => Promise<unknown> = async () => undefined
): Promise<number> {
  let removed = 0
  const limits = [
    ['completed', delivery.historyHours * 3_600_000],
    ['failed', delivery.deadLetterRetentionDays * 86_400_000]
  ] as const
  for (const [state, graceMs] of limits) {
    let batch: string[]
    do {
      batch = await queue.clean(Math.round(graceMs), CLEAN_BATCH, state)
      if (state === 'failed') await releaseBodies(batch)
      removed += batch.length
    } while (batch.length === CLEAN_BATCH)
  }
  return removed
}

/** Runs `task` every `intervalMs`, never two at once, until stopped. */
function every(intervalMs: number, task: () => Promise<void>) {
  let running: Promise<void> | undefined
  const timer = setInterval(() => {
    running ??= task().finally(() => {
      running = undefined
    })
  }, intervalMs)
  return async () => {
    clearInterval(timer)
    await running
  }
}

/** The circuit breakers' probes and the retention sweep, for as long as the workers run. */
export function startMaintenance({ controls, queues, bodies, delivered, delivery, log }: MaintenanceOptions): () => Promise<void> {
  const stopProbes = every(delivery.probeIntervalMs, async () => {
    await Promise.all(
      controls.map(({ control, probe }) =>
        control.probe(probe).catch((error: Error) =>
          log.warn({ subscriber: control.name, err: { message: error.message } }, 'circuit breaker probe failed')
        )
      )
    )
  })
  const stopSweeps = every(delivery.retentionSweepIntervalMs, async () => {
    for (const [subscriber, queue] of queues) {
      const release = (eventIds: readonly string[]) => Promise.all(eventIds.map((eventId) => bodies.settle(eventId, subscriber)))
      const cutoffMs = Date.now() - delivery.historyHours * 3_600_000
      const removed = await Promise.all([sweepRetention(queue, delivery, release), delivered.sweep(subscriber, cutoffMs)])
        .then(([jobs, records]) => jobs + records)
        .catch((error: Error) => {
          log.warn({ queue: queue.name, err: { message: error.message } }, 'retention sweep failed')
          return 0
        })
      if (removed > 0) log.info({ queue: queue.name, removed }, 'retention sweep removed expired deliveries')
    }
  })
  return async () => {
    await Promise.all([stopProbes(), stopSweeps()])
  }
}
