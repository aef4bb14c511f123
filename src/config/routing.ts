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
