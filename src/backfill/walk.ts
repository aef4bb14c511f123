import Value from 'typebox/value'
import { PersonaEventData, toPersonaEvent, type PersonaEvent } from '../persona/event.js'
import type { BackfillRange } from './range.js'

/** An event of the API list, in the form a webhook would have brought it. */
export interface ListedEvent extends PersonaEvent {
  createdAtMs: number
  /** `{"data": <item>}`: there are no original bytes, so the item is serialised again. */
  body: string
}

export interface PageVerdict {
  /** Items inside the range, to record unless already recorded. */
  events: ListedEvent[]
  /** Items that are not Persona events or carry no readable creation time: skipped and counted. */
  invalid: number
  /** True once an item is older than `since`: pages are newest first, so later pages hold nothing wanted. */
  done: boolean
}

/**
 * Sorts one page. Every item of the page is looked at even after one older than `since`, so that
 * events slightly out of order within a page are not lost; the walk then stops after this page.
 */
export function sortPage(items: readonly unknown[], range: BackfillRange): PageVerdict {
  const events: ListedEvent[] = []
  let invalid = 0
  let done = false
  for (const item of items) {
    if (!Value.Check(PersonaEventData, item)) {
      invalid += 1
      continue
    }
    const event = toPersonaEvent({ data: item })
    const createdAtMs = Date.parse(event.createdAt)
    if (Number.isNaN(createdAtMs)) {
      invalid += 1
      continue
    }
    if (createdAtMs < range.sinceMs) {
      done = true
      continue
    }
    if (createdAtMs > range.untilMs) continue
    events.push({ ...event, createdAtMs, body: JSON.stringify({ data: item }) })
  }
  return { events, invalid, done }
}
