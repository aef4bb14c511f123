import type { Queue } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config/index.js'
import type { DeliveryJobData } from './job.js'
import type { ProbeAttempt, SubscriberControl } from './subscriber-control.js'

const CLEAN_BATCH = 1000

export interface MaintenanceOptions {
  controls: readonly { control: SubscriberControl; probe: ProbeAttempt }[]
  queues: Iterable<Queue<DeliveryJobData>>
  delivery: Config['delivery']
  log: FastifyBaseLogger
}

/**
 * BullMQ removes old finished jobs only when other jobs finish, so a quiet queue would keep
 * bodies past their retention: a sweep enforces DELIVERY_HISTORY_HOURS and
 * DEAD_LETTER_RETENTION_DAYS on a timer. Completed jobs no longer hold a body; failed ones do.
 */
export async function sweepRetention(queue: Queue<DeliveryJobData>, delivery: Config['delivery']): Promise<number> {
  let removed = 0
  const limits = [
    ['completed', delivery.historyHours * 3_600_000],
    ['failed', delivery.deadLetterRetentionDays * 86_400_000]
  ] as const
  for (const [state, graceMs] of limits) {
    let batch: string[]
    do {
      batch = await queue.clean(Math.round(graceMs), CLEAN_BATCH, state)
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
export function startMaintenance({ controls, queues, delivery, log }: MaintenanceOptions): () => Promise<void> {
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
    for (const queue of queues) {
      const removed = await sweepRetention(queue, delivery).catch((error: Error) => {
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
