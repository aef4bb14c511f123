import Type, { type Static } from 'typebox'
import { OBJECT_ID_PATTERN } from '../../persona/event.js'
import { AttemptSchema, DELIVERY_STATES, DeliverySchema } from '../../delivery/types.js'

const IsoTime = Type.String({ format: 'date-time' })

export { AttemptSchema, DeliverySchema }

export const EventSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  createdAt: Type.String(),
  receivedAt: Type.String(),
  source: Type.String(),
  /** The Persona object the event is about (`payload.data`), when it names one. */
  object: Type.Optional(Type.Object({ type: Type.String(), id: Type.String() })),
  /** Persona redacted the object: the relay removed the body, and keeps only this metadata. */
  bodyRedacted: Type.Optional(Type.Literal(true)),
  /**
   * One per subscriber the event was routed to; `unknown` until fan-out has queued it or once its
   * history expired; `skipped` for a subscriber whose payload filter refused it.
   */
  deliveries: Type.Array(DeliverySchema)
})
export type EventView = Static<typeof EventSchema>

export const ObjectSchema = Type.Object({
  id: Type.String(),
  type: Type.String(),
  /** Newest `created-at` first. */
  events: Type.Array(EventSchema)
})
export const ObjectParams = Type.Object({ objectId: Type.String({ pattern: OBJECT_ID_PATTERN }) })

// As config/ and persona/event.ts take them. A delivery's job id is its event id, and BullMQ keeps its
// own keys (`events`, `meta`, `id`…) beside a queue's jobs: any other id could read one of those.
const SUBSCRIBER_NAME = '[A-Z0-9_]+'
export const EVENT_ID = 'evt_[A-Za-z0-9_-]{1,128}'
const SubscriberName = Type.String({ pattern: `^${SUBSCRIBER_NAME}$` })

export const EventParams = Type.Object({ eventId: Type.String({ pattern: `^${EVENT_ID}$` }) })
/** `<SUBSCRIBER>.<event id>`, as delivery/types.ts builds it. */
export const DeliveryParams = Type.Object({ deliveryId: Type.String({ pattern: `^${SUBSCRIBER_NAME}\\.${EVENT_ID}$` }) })
export const SubscriberParams = Type.Object({ name: SubscriberName })

export const DeliveryListQuery = Type.Object({
  /** Default `failed`. */
  state: Type.Optional(Type.Enum([...DELIVERY_STATES])),
  subscriber: Type.Optional(SubscriberName),
  /** Default 50. */
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
  /** An offset; bounded, as every queue is read up to it. */
  cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$' }))
})

export const DeliveryList = Type.Object({
  items: Type.Array(DeliverySchema),
  /** Pass as `cursor` for the next page; absent on the last page. */
  nextCursor: Type.Optional(Type.String())
})

export const BulkRetryBody = Type.Object(
  {
    subscriber: Type.Optional(SubscriberName),
    since: Type.Optional(IsoTime),
    until: Type.Optional(IsoTime)
  },
  { additionalProperties: false }
)

export const Retried = Type.Object({ retried: Type.Integer() })

export const SubscriberSchema = Type.Object({
  name: Type.String(),
  url: Type.String(),
  patterns: Type.Array(Type.String()),
  /** SUBSCRIBER_<NAME>_FILTER as configured. */
  filter: Type.Optional(Type.String()),
  /** SUBSCRIBER_<NAME>_RATE_LIMIT as configured (`50/s`). */
  rateLimit: Type.Optional(Type.String()),
  /** SUBSCRIBER_<NAME>_ORDERING=object, with its window and stale rule. */
  ordering: Type.Optional(Type.Object({ windowMs: Type.Integer(), stale: Type.Enum(['deliver', 'skip']) })),
  state: Type.Enum(['active', 'paused']),
  pauseReason: Type.Optional(Type.Enum(['breaker', 'manual'])),
  pausedSince: Type.Optional(Type.String()),
  consecutiveFailures: Type.Integer(),
  /** How long its oldest delivery waiting to be sent has waited (0 when none waits). */
  oldestWaitingMs: Type.Integer(),
  counts: Type.Object({
    pending: Type.Integer(),
    delayed: Type.Integer(),
    active: Type.Integer(),
    completed: Type.Integer(),
    failed: Type.Integer()
  })
})

export const SubscriberList = Type.Object({ subscribers: Type.Array(SubscriberSchema) })

export const BackfillBody = Type.Object(
  {
    /** An ISO 8601 time with its zone, or a duration back from now (`30m`, `2h`, `7d`). */
    since: Type.String({ minLength: 1, maxLength: 64 }),
    /** Same forms; default now. */
    until: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    dryRun: Type.Optional(Type.Boolean())
  },
  { additionalProperties: false }
)

/** Any id that is not a backfill's is simply not found (404). */
export const BackfillParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) })

export { BackfillJobSchema } from '../../backfill/jobs.js'

/** One subscriber's attempts per minute over the last hour, oldest first. */
export const ActivitySchema = Type.Object({
  subscriber: Type.String(),
  minutes: Type.Array(Type.Object({ at: IsoTime, delivered: Type.Integer(), failed: Type.Integer() }))
})

export const EventSearchQuery = Type.Object({
  /** An event id (`evt_…`), a Persona object id (`inq_…`), or an event name; empty lists every event. */
  q: Type.Optional(Type.String({ maxLength: 256 })),
  /** Received at or after / before, ISO 8601. */
  since: Type.Optional(IsoTime),
  until: Type.Optional(IsoTime),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 }))
})

export const EventSearchResult = Type.Object({
  /** What `q` was taken as. */
  match: Type.Enum(['event', 'object', 'name', 'all']),
  /** Newest received first. */
  items: Type.Array(EventSchema)
})
