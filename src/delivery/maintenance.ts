import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config/index.js'
import type { Completions } from '../store/completions.js'
import type { Outcomes } from './outcomes.js'
import type { DeliveryQueue } from './queue.js'
import type { ProbeAttempt, SubscriberControl } from './subscriber-control.js'

const CLEAN_BATCH = 1000

export interface MaintenanceOptions {
  controls: readonly { control: SubscriberControl; probe: ProbeAttempt }[]
  queues: ReadonlyMap<string, DeliveryQueue>
  completions: Completions
  outcomes: Outcomes
  delivery: Config['delivery']
  log: FastifyBaseLogger
}

/**
 * BullMQ removes old dead letters only when other jobs fail, so a quiet queue would keep them past
 * DEAD_LETTER_RETENTION_DAYS: a sweep enforces it on a timer, and DELIVERY_HISTORY_HOURS on the
 * completion store. A dead letter removed lets go of its event's body, which goes once no other
 * delivery of the event needs it. Completed jobs are swept too: only releases before the
 * completion store kept them, and nothing else would ever remove them.
 */
export async function sweepQueue(
  queue: DeliveryQueue,
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
export function startMaintenance({ controls, queues, completions, outcomes, delivery, log }: MaintenanceOptions): () => Promise<void> {
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
      const release = (eventIds: readonly string[]) => Promise.all(eventIds.map((eventId) => outcomes.released(eventId, subscriber)))
      const cutoffMs = Date.now() - delivery.historyHours * 3_600_000
      const removed = await Promise.all([sweepQueue(queue, delivery, release), completions.sweep(subscriber, cutoffMs)])
        .then(([jobs, completed]) => jobs + completed)
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
