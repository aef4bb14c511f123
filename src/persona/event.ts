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
}

export function toPersonaEvent(envelope: PersonaEventEnvelope): PersonaEvent {
  const { id, attributes } = envelope.data
  return {
    id,
    name: attributes.name,
    createdAt: attributes['created-at'] ?? attributes.createdAt ?? attributes.created_at ?? ''
  }
}
