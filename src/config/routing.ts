import { compileFilter, type EventFilter } from './filter.js'

export interface Routable {
  name: string
  patterns: readonly string[]
}

/** `*` matches any run of characters (including `.` and `/`); everything else is literal. */
export function compilePattern(pattern: string): RegExp {
  const literal = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\/-]/g, '\\$&'))
  // dotAll: names come from outside, and `*` must not stop at a line break.
  return new RegExp(`^${literal.join('.*')}$`, 's')
}

const CACHE_LIMIT = 1024

/**
 * Returns the function that names the subscribers an event goes to. Event names repeat, so
 * answers are memoised; the cache is bounded because names come from outside.
 */
export function createRouter(subscribers: readonly Routable[]): (eventName: string) => string[] {
  const compiled = subscribers.map((subscriber) => ({
    name: subscriber.name,
    patterns: subscriber.patterns.map(compilePattern)
  }))
  const cache = new Map<string, string[]>()
  return (eventName) => {
    let names = cache.get(eventName)
    if (names) return names
    names = compiled
      .filter((subscriber) => subscriber.patterns.some((pattern) => pattern.test(eventName)))
      .map((subscriber) => subscriber.name)
    if (cache.size >= CACHE_LIMIT) cache.clear()
    cache.set(eventName, names)
    return names
  }
}

export interface FilteredRoutable extends Routable {
  /** The subscriber's payload filter (SUBSCRIBER_<NAME>_FILTER), already checked by loadConfig. */
  filter?: string | undefined
}

export interface Routing {
  /** Subscribers the event goes to. */
  subscribers: string[]
  /** Subscribers whose patterns matched but whose filter refused the event. */
  filtered: string[]
  /** Of those, the ones whose filter threw on this event instead of answering: counted apart. */
  filterErrors?: string[]
}

/**
 * Routes an event by name, then by each matching subscriber's payload filter (filter.ts), for
 * webhooks and backfilled events alike. Events that reach no filtered subscriber cost only the
 * name lookup.
 */
export type EventRouter = (event: { name: string; attributes: Record<string, unknown> }) => Routing

export function createEventRouter(subscribers: readonly FilteredRoutable[], compile: typeof compileFilter = compileFilter): EventRouter {
  const byName = createRouter(subscribers)
  const filters = new Map<string, EventFilter>()
  for (const subscriber of subscribers) {
    if (subscriber.filter === undefined) continue
    const compiled = compile(subscriber.filter)
    if (typeof compiled === 'string') throw new Error(`SUBSCRIBER_${subscriber.name}_FILTER: ${compiled}`)
    filters.set(subscriber.name, compiled)
  }
  return ({ name, attributes }) => {
    const matched = byName(name)
    if (filters.size === 0 || !matched.some((subscriber) => filters.has(subscriber))) return { subscribers: matched, filtered: [] }
    const routing: Routing = { subscribers: [], filtered: [] }
    for (const subscriber of matched) {
      const filter = filters.get(subscriber)
      let passes = true
      try {
        passes = !filter || filter(attributes)
      } catch {
        // A filter that cannot decide sends nothing: it asked for only some events, not for all.
        passes = false
        ;(routing.filterErrors ??= []).push(subscriber)
      }
      ;(passes ? routing.subscribers : routing.filtered).push(subscriber)
    }
    return routing
  }
}
