import type { FastifyBaseLogger } from 'fastify'
import type { RedisClient } from '../store/redis.js'
import type { EventRouter } from '../config/routing.js'
import { Errors } from '../errors.js'
import type { PersonaEventsApi } from '../persona/events-api.js'
import type { EventStore } from '../store/event-store.js'
import type { RelayMetrics } from '../ops/metrics.js'
import { WOULD_QUEUE_LISTED, type WouldQueueEvent } from './jobs.js'
import type { BackfillRange } from './range.js'
import { sortPage, type ListedEvent } from './walk.js'

export interface BackfillCounts {
  pages: number
  seen: number
  queued: number
  skipped: number
  invalid: number
  wouldQueue: number
  wouldQueueEvents?: WouldQueueEvent[]
  newestCreatedAt?: string
}

export interface RunContext {
  api: PersonaEventsApi
  store: EventStore
  /** For the dry run's EXISTS, which must write nothing. */
  redis: RedisClient
  route: EventRouter
  metrics: RelayMetrics | undefined
  log: FastifyBaseLogger
  signal: AbortSignal
  /** Called after every page with the counts so far. */
  onPage: (counts: BackfillCounts) => Promise<void>
}

type EventOutcome = 'queued' | 'skipped' | 'would_queue'

const COUNTED_AS = { queued: 'queued', skipped: 'skipped', would_queue: 'wouldQueue' } as const

/**
 * Walks Persona's list back to `since` and records every event in the range that is not recorded
 * yet, through the webhook's own path: the same store script (same de-duplication key, same intake
 * stream, so the same fan-out and delivery) and the same routing, with source `backfill`.
 */
export async function runBackfill(range: BackfillRange, dryRun: boolean, context: RunContext): Promise<BackfillCounts> {
  const { api, metrics, log, signal } = context
  const counts: BackfillCounts = { pages: 0, seen: 0, queued: 0, skipped: 0, invalid: 0, wouldQueue: 0, ...(dryRun ? { wouldQueueEvents: [] } : {}) }
  let newestMs = -Infinity
  for await (const page of api.pages(signal)) {
    const verdict = sortPage(page.items, range)
    counts.pages += 1
    counts.seen += page.items.length
    counts.invalid += verdict.invalid
    if (verdict.invalid > 0) {
      metrics?.backfillEvents('invalid', verdict.invalid)
      log.warn({ source: 'backfill', invalid: verdict.invalid, page: counts.pages }, 'backfill: items that are not Persona events skipped')
    }
    for (const event of verdict.events) {
      signal.throwIfAborted()
      if (event.createdAtMs > newestMs) {
        newestMs = event.createdAtMs
        counts.newestCreatedAt = event.createdAt
      }
      const outcome = await recordOnce(event, dryRun, context)
      counts[COUNTED_AS[outcome]] += 1
      if (outcome === 'would_queue' && counts.wouldQueue <= WOULD_QUEUE_LISTED) {
        counts.wouldQueueEvents!.push({ id: event.id, name: event.name, createdAt: event.createdAt, subscribers: context.route(event).subscribers })
      }
      metrics?.backfillEvents(outcome)
      if (outcome !== 'skipped') log.info({ eventId: event.id, eventName: event.name, source: 'backfill', outcome, dryRun }, 'backfill event')
    }
    await context.onPage({ ...counts })
    if (verdict.done) break
  }
  return counts
}

/** A dry run only asks whether the id is recorded; a real run records it as the webhook route does. */
async function recordOnce(event: ListedEvent, dryRun: boolean, context: RunContext): Promise<EventOutcome> {
  const { store, redis, route, metrics, log } = context
  try {
    if (dryRun) return (await redis.exists(store.keys.event(event.id))) === 1 ? 'skipped' : 'would_queue'
    const { id, name, createdAt, body, object } = event
    const routing = route(event)
    const recorded = await store.record({ id, name, createdAt, body, ...routing, object, source: 'backfill' })
    if (recorded === 'duplicate') return 'skipped'
    metrics?.routed(routing)
    return 'queued'
  } catch (error) {
    log.warn({ eventId: event.id, source: 'backfill', err: { message: (error as Error).message } }, 'event store unavailable')
    throw new Errors.STORE_UNAVAILABLE()
  }
}
