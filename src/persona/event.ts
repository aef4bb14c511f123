import Type, { type Static } from 'typebox'

const CreatedAt = Type.Optional(Type.String({ minLength: 1 }))

/**
 * What the relay needs of a Persona webhook body. Everything else (payload, unknown fields, new
 * event names) passes through untouched, as Persona adds fields without notice. `created-at`
 * follows the webhook's key inflection, so all three spellings are read.
 */
export const PersonaEventData = Type.Object({
  type: Type.Literal('event'),
  id: Type.String({ pattern: '^evt_[A-Za-z0-9_-]{1,128}$' }),
  attributes: Type.Object({
    name: Type.String({ minLength: 1, maxLength: 256 }),
    'created-at': CreatedAt,
    createdAt: CreatedAt,
    created_at: CreatedAt
  })
})

/** A webhook body; the Events API lists the same `data` objects, one per item. */
export const PersonaEventEnvelope = Type.Object({ data: PersonaEventData })

export type PersonaEventEnvelope = Static<typeof PersonaEventEnvelope>

export interface PersonaEvent {
  id: string
  name: string
  /** Persona's creation time as sent, or empty when the body carries none. */
  createdAt: string
  /** The Persona object the event is about (`payload.data`), when it names one the relay can index. */
  object?: PersonaObject
  /** `data.attributes` as parsed: what subscribers' filters are evaluated over. */
  attributes: Record<string, unknown>
}

export interface PersonaObject {
  type: string
  id: string
}

/** Ids as Persona writes them (`inq_…`, `ver_…`): anything else is not indexed, ordered or redacted. */
export const OBJECT_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$'
const OBJECT_ID = new RegExp(OBJECT_ID_PATTERN)

export function isObjectId(id: string): boolean {
  return OBJECT_ID.test(id)
}
const OBJECT_TYPE = /^[a-z][a-z0-9/_-]{0,63}$/

export function toPersonaEvent(envelope: PersonaEventEnvelope): PersonaEvent {
  const { id, attributes } = envelope.data
  const object = objectOf(attributes)
  return {
    id,
    name: attributes.name,
    createdAt: attributes['created-at'] ?? attributes.createdAt ?? attributes.created_at ?? '',
    ...(object ? { object } : {}),
    attributes
  }
}

/** `payload.data.type` and `.id`: single-word keys, the same in every inflection. */
function objectOf(attributes: Record<string, unknown>): PersonaObject | undefined {
  const payload = attributes.payload
  const data = typeof payload === 'object' && payload !== null ? (payload as { data?: unknown }).data : undefined
  if (typeof data !== 'object' || data === null) return undefined
  const { type, id } = data as { type?: unknown; id?: unknown }
  if (typeof type !== 'string' || typeof id !== 'string' || !OBJECT_TYPE.test(type) || !isObjectId(id)) return undefined
  return { type, id }
}

/**
 * `<object>.redacted` (`inquiry.redacted`, `account.redacted`…): Persona has erased the object's
 * personal data, and the relay removes the bodies it still keeps of the object's earlier events.
 */
export function isRedaction(event: { name: string; object?: PersonaObject | undefined }): boolean {
  return event.object !== undefined && event.name.endsWith('.redacted')
}
