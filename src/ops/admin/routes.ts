import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Config } from '../../config/index.js'
import { ErrorResponse, Errors } from '../../errors.js'
import { deliveryCounts, getDelivery, listDeliveries, retryFailedDeliveries } from '../../delivery/deliveries.js'
import { oldestWaitingMs, replay } from '../../delivery/queue.js'
import { activityOf } from '../../delivery/activity.js'
import { isObjectId } from '../../persona/event.js'
import { objectEvents, receivedBetween } from '../../store/event-store.js'
import { deliveryId, parseDeliveryId, type DeliveryView } from '../../delivery/types.js'
import { backfillRoutes } from './backfill-routes.js'
import { adminAuthorized, BASIC_CHALLENGE, forgeable } from './credentials.js'
import { consoleRoutes } from '../console/routes.js'
import {
  ActivitySchema,
  BulkRetryBody,
  DeliveryList,
  DeliveryListQuery,
  DeliveryParams,
  DeliverySchema,
  EventParams,
  EVENT_ID,
  EventSchema,
  EventSearchQuery,
  EventSearchResult,
  ObjectParams,
  ObjectSchema,
  Retried,
  SubscriberList,
  SubscriberParams,
  SubscriberSchema,
  type EventView
} from './schemas.js'

const Errors4xx = { 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 503: ErrorResponse }

/** The admin API; registered only when ADMIN_TOKEN is set, so without it these routes are 404. */
export const adminRoutes: FastifyPluginAsyncTypebox<{ config: Config; token: string }> = async (app, { config, token }) => {
  const { queues, controls, completions } = app.delivery

  app.addHook('onRequest', async (request, reply) => {
    if (!adminAuthorized(request.headers.authorization, token)) {
      reply.header('www-authenticate', BASIC_CHALLENGE)
      throw new Errors.ADMIN_UNAUTHORIZED()
    }
    if (forgeable(request)) throw new Errors.ADMIN_JSON_REQUIRED()
  })
  await app.register(backfillRoutes)
  await app.register(consoleRoutes, { prefix: '/console' })

  function queueOf(name: string) {
    const queue = queues.get(name)
    if (!queue) throw new Errors.SUBSCRIBER_NOT_FOUND()
    return queue
  }

  /** An event and each routed subscriber's delivery of it; undefined once nothing of it is left. */
  async function eventView(eventId: string): Promise<EventView | undefined> {
    // Only a configured subscriber's worker marks a skip: their fields come in the same read.
    const configured = [...queues.keys()]
    const [name, createdAt, receivedAt, subscribers, source, filtered, objectType, objectId, redacted, ...skips] = await app.redis.hmget(
      app.eventStore.keys.event(eventId), 'name', 'createdAt', 'receivedAt', 'subscribers', 'source', 'filtered', 'objectType', 'objectId', 'redacted',
      ...configured.map((subscriber) => `skip:${subscriber}`)
    )
    const skipped = new Map(configured.map((subscriber, index) => [subscriber, skips[index]]))
    const routed = typeof subscribers === 'string' ? subscribers.split(',').filter(Boolean) : configured
    const deliveries: DeliveryView[] = []
    for (const subscriber of routed) {
      const queue = queues.get(subscriber)
      const delivery = queue ? await getDelivery(app.redis, queue, completions, subscriber, eventId) : undefined
      if (delivery) deliveries.push(delivery)
      else if (skipped.get(subscriber) === 'stale') deliveries.push({ ...unattempted(subscriber, eventId, name!, receivedAt ?? '', 'skipped'), skipReason: 'stale' })
      else if (name) deliveries.push(unattempted(subscriber, eventId, name, receivedAt ?? '', 'unknown'))
    }
    for (const subscriber of filtered?.split(',').filter(Boolean) ?? []) {
      deliveries.push({ ...unattempted(subscriber, eventId, name!, receivedAt ?? '', 'skipped'), skipReason: 'filtered' })
    }
    // The id record expires after DEDUPE_TTL_SECONDS; a dead letter may outlive it.
    if (!name && deliveries.length === 0) return undefined
    return {
      id: eventId,
      name: name ?? deliveries[0]!.eventName,
      createdAt: createdAt ?? '',
      receivedAt: receivedAt ?? '',
      source: source ?? 'webhook',
      ...(objectType && objectId ? { object: { type: objectType, id: objectId } } : {}),
      ...(redacted ? { bodyRedacted: true as const } : {}),
      deliveries
    }
  }

  app.get('/events/:eventId', { schema: { params: EventParams, response: { 200: EventSchema, ...Errors4xx } } }, async (request) => {
    const view = await eventView(request.params.eventId)
    if (!view) throw new Errors.EVENT_NOT_FOUND()
    return view
  })

  app.get('/events', { schema: { querystring: EventSearchQuery, response: { 200: EventSearchResult, ...Errors4xx } } }, async (request) => {
    const { q = '', since, until, limit = 50 } = request.query
    const sinceMs = since ? Date.parse(since) : -Infinity
    const untilMs = until ? Date.parse(until) : Infinity
    const received = (view: EventView) => Date.parse(view.receivedAt)
    const inRange = (view: EventView) => received(view) >= sinceMs && received(view) <= untilMs
    const newestFirst = (views: (EventView | undefined)[]) =>
      views.filter((view): view is EventView => view !== undefined && inRange(view)).sort((a, b) => received(b) - received(a)).slice(0, limit)
    if (AN_EVENT_ID.test(q)) return { match: 'event' as const, items: newestFirst([await eventView(q)]) }
    if (isObjectId(q)) {
      const ids = await objectEvents(app.redis, app.eventStore.keys, q, OBJECT_EVENTS_SHOWN)
      if (ids.length > 0) return { match: 'object' as const, items: newestFirst(await Promise.all(ids.map(eventView))) }
    }
    return { match: q ? ('name' as const) : ('all' as const), items: await eventsReceived(q, sinceMs, untilMs, limit) }
  })

  /** Events received in the range, newest first, with the name `name` ('' for any); at most SEARCH_SCANNED looked at. */
  async function eventsReceived(name: string, sinceMs: number, untilMs: number, limit: number): Promise<EventView[]> {
    const found: EventView[] = []
    const min = Number.isFinite(sinceMs) ? String(sinceMs) : '-inf'
    let max = Number.isFinite(untilMs) ? String(untilMs) : '+inf'
    for (let scanned = 0; found.length < limit && scanned < SEARCH_SCANNED; scanned += SEARCH_PAGE) {
      const page = await receivedBetween(app.redis, app.eventStore.keys, min, max, SEARCH_PAGE)
      if (page.length === 0) break
      const ids = page.map(([eventId]) => eventId)
      // One command per event, not a pipeline: on a cluster the events' records are on several nodes.
      const names = name ? await Promise.all(ids.map((id) => app.redis.hget(app.eventStore.keys.event(id), 'name'))) : undefined
      const wanted = ids.filter((_, index) => !names || names[index] === name)
      for (const view of await Promise.all(wanted.map(eventView))) if (view && found.length < limit) found.push(view)
      // The next page starts below this one's oldest; ties at that millisecond are rare, and shown once.
      max = `(${page.at(-1)![1]}`
      if (ids.length < SEARCH_PAGE) break
    }
    return found
  }

  app.get('/objects/:objectId', { schema: { params: ObjectParams, response: { 200: ObjectSchema, ...Errors4xx } } }, async (request) => {
    const { objectId } = request.params
    // Members whose records expired are skipped; the index itself expires with its newest event.
    const ids = await objectEvents(app.redis, app.eventStore.keys, objectId, OBJECT_EVENTS_SHOWN)
    const events = (await Promise.all(ids.map(eventView))).filter((view): view is EventView => view?.object !== undefined)
    if (events.length === 0) throw new Errors.OBJECT_NOT_FOUND()
    return { id: objectId, type: events[0]!.object!.type, events }
  })

  app.get('/deliveries', { schema: { querystring: DeliveryListQuery, response: { 200: DeliveryList, ...Errors4xx } } }, async (request) => {
    const { state = 'failed', subscriber, limit = 50, cursor } = request.query
    const selected = subscriber ? new Map([[subscriber, queueOf(subscriber)]]) : queues
    const offset = cursor ? Number(cursor) : 0
    const { items, more } = await listDeliveries(app.redis, selected, completions, { state, limit, offset })
    return { items, ...(more ? { nextCursor: String(offset + limit) } : {}) }
  })

  app.post('/deliveries/:deliveryId/retry', { schema: { params: DeliveryParams, response: { 202: DeliverySchema, ...Errors4xx } } }, async (request, reply) => {
    const parsed = parseDeliveryId(request.params.deliveryId)
    const queue = parsed && queues.get(parsed.subscriber)
    const job = parsed && queue ? await queue.getJob(parsed.eventId) : undefined
    if (!job && parsed && queue && (await completions.get(parsed.subscriber, parsed.eventId))) throw new Errors.DELIVERY_NOT_FAILED()
    if (!parsed || !queue || !job) throw new Errors.DELIVERY_NOT_FOUND()
    if ((await job.getState()) !== 'failed') throw new Errors.DELIVERY_NOT_FAILED()
    if (await app.redis.hexists(app.eventStore.keys.event(parsed.eventId), 'redacted')) throw new Errors.EVENT_REDACTED()
    await replay(job)
    request.log.info({ delivery: request.params.deliveryId }, 'admin: delivery re-queued')
    return reply.code(202).send((await getDelivery(app.redis, queue, completions, parsed.subscriber, parsed.eventId))!)
  })

  const bulkRetry = {
    schema: { body: BulkRetryBody, response: { 202: Retried, ...Errors4xx } },
    // The body is optional, and Fastify validates an absent one too, as null.
    preValidation: async (request: { body: unknown }) => {
      request.body ??= {}
    }
  }
  app.post('/deliveries/retry', bulkRetry, async (request, reply) => {
    const { subscriber, since, until } = request.body
    const selected = subscriber ? [[subscriber, queueOf(subscriber)] as const] : [...queues]
    const sinceMs = since ? Date.parse(since) : 0
    // Capped at now: what fails again after being retried here must not be retried again.
    const untilMs = Math.min(until ? Date.parse(until) : Infinity, Date.now())
    let retried = 0
    for (const [, queue] of selected) retried += await retryFailedDeliveries(queue, app.redis, sinceMs, untilMs)
    request.log.info({ subscriber, since, until, retried }, 'admin: failed deliveries re-queued')
    return reply.code(202).send({ retried })
  })

  app.get('/subscribers', { schema: { response: { 200: SubscriberList, ...Errors4xx } } }, async () => ({
    subscribers: await Promise.all(config.subscribers.map((subscriber) => describeSubscriber(subscriber.name)))
  }))

  app.get('/subscribers/:name/activity', { schema: { params: SubscriberParams, response: { 200: ActivitySchema, ...Errors4xx } } }, async (request) => {
    const { name } = request.params
    queueOf(name)
    return { subscriber: name, minutes: await activityOf(app.redis, app.eventStore.keys, name) }
  })

  for (const action of ['pause', 'resume'] as const) {
    app.post(`/subscribers/:name/${action}`, { schema: { params: SubscriberParams, response: { 200: SubscriberSchema, ...Errors4xx } } }, async (request) => {
      const control = controls.get(request.params.name)
      if (!control) throw new Errors.SUBSCRIBER_NOT_FOUND()
      if (action === 'pause') await control.pause('manual')
      else await control.resume('manual')
      return describeSubscriber(request.params.name)
    })
  }

  async function describeSubscriber(name: string) {
    const subscriber = config.subscribers.find((candidate) => candidate.name === name)!
    const [state, counts, waitedMs] = await Promise.all([
      controls.get(name)!.state(),
      deliveryCounts(queueOf(name), completions, name, ['wait', 'prioritized', 'delayed', 'active', 'completed', 'failed']),
      oldestWaitingMs(queueOf(name))
    ])
    return {
      name,
      url: withoutCredentials(subscriber.url),
      patterns: subscriber.patterns,
      ...(subscriber.filter ? { filter: subscriber.filter } : {}),
      ...(subscriber.rateLimit ? { rateLimit: subscriber.rateLimit.text } : {}),
      ...(subscriber.ordering ? { ordering: subscriber.ordering } : {}),
      state: state.paused ? ('paused' as const) : ('active' as const),
      ...(state.reason ? { pauseReason: state.reason } : {}),
      ...(state.since ? { pausedSince: state.since } : {}),
      consecutiveFailures: state.consecutiveFailures,
      oldestWaitingMs: Math.round(waitedMs),
      counts: {
        pending: (counts.wait ?? 0) + (counts.prioritized ?? 0),
        delayed: counts.delayed ?? 0,
        active: counts.active ?? 0,
        completed: counts.completed ?? 0,
        failed: counts.failed ?? 0
      }
    }
  }
}

/** The most events one object's view lists, newest first. */
const OBJECT_EVENTS_SHOWN = 200
/** Search by name or time reads the index of received events a page at a time, up to this many. */
const SEARCH_PAGE = 200
const SEARCH_SCANNED = 5000
const AN_EVENT_ID = new RegExp(`^${EVENT_ID}$`)

/** A delivery with no attempt: not queued yet or its history expired (`unknown`), or refused by a filter (`skipped`). */
function unattempted(subscriber: string, eventId: string, eventName: string, receivedAt: string, state: 'unknown' | 'skipped'): DeliveryView {
  return {
    id: deliveryId(subscriber, eventId),
    subscriber,
    eventId,
    eventName,
    state,
    attemptsMade: 0,
    maxAttempts: 0,
    queuedAt: receivedAt,
    attempts: []
  }
}

/** Subscriber URLs may carry credentials in the user info or in the query (`?token=`): only names stay. */
function withoutCredentials(url: string): string {
  const parsed = new URL(url)
  parsed.username = ''
  parsed.password = ''
  for (const name of new Set(parsed.searchParams.keys())) parsed.searchParams.set(name, 'redacted')
  return parsed.toString()
}
