import { randomBytes } from 'node:crypto'

const ID_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789'

/** A Persona-style id: prefix plus 24 base-58-ish characters (`evt_7QkT2mZr9VbX4nLp8sWc3hJd`). */
export function personaId(prefix: string): string {
  const bytes = randomBytes(24)
  let id = ''
  for (const byte of bytes) id += ID_ALPHABET[byte % ID_ALPHABET.length]
  return `${prefix}_${id}`
}

/** The resource an event is about, from its name (`inquiry.approved` → inquiry, `report/watchlist.matched` → report/watchlist). */
function resourceType(eventName: string): string {
  return eventName.includes('.') ? eventName.slice(0, eventName.lastIndexOf('.')) : eventName
}

const RESOURCE_PREFIXES: Record<string, string> = {
  inquiry: 'inq',
  'inquiry-session': 'iqse',
  verification: 'ver',
  account: 'act',
  case: 'case',
  transaction: 'txn',
  document: 'doc',
  selfie: 'self'
}

/**
 * A realistic, synthetic Persona webhook body for an event name: the JSON:API envelope with a
 * kebab-case payload shaped like Persona's (synthetic person, fresh ids, times of now).
 */
export function sampleEvent(eventName: string, now = new Date()): { id: string; body: string } {
  const id = personaId('evt')
  const type = resourceType(eventName)
  const family = type.split('/')[0]!
  const resourceId = personaId(RESOURCE_PREFIXES[family] ?? (family.replace(/[^a-z]/g, '').slice(0, 4) || 'obj'))
  const at = now.toISOString()
  const status = eventName.slice(eventName.lastIndexOf('.') + 1)
  const envelope = {
    data: {
      type: 'event',
      id,
      attributes: {
        name: eventName,
        'created-at': at,
        'redacted-at': null,
        payload: {
          data: {
            type,
            id: resourceId,
            attributes: {
              status,
              'reference-id': 'user_000123',
              'created-at': at,
              'updated-at': at,
              fields: {
                'name-first': { type: 'string', value: 'ALEX' },
                'name-last': { type: 'string', value: 'EXAMPLE' },
                birthdate: { type: 'date', value: '1990-01-01' },
                'address-country-code': { type: 'string', value: 'US' }
              }
            },
            relationships: { account: { data: { type: 'account', id: personaId('act') } } }
          },
          included: []
        }
      }
    }
  }
  return { id, body: JSON.stringify(envelope) }
}
