import sift from 'sift'
import { kebabCase, kebabKeys } from '../persona/inflection.js'

/** Operators that run code: a filter comes from configuration, but it must stay a query. */
const CODE_OPERATORS = new Set(['$where', '$function', '$accumulator', '$expr'])

export type EventFilter = (attributes: Record<string, unknown>) => boolean

/**
 * A subscriber's payload filter: a MongoDB-style query (evaluated by sift) over the event's
 * `data.attributes`, with every key read in kebab-case, so that one filter matches a webhook sent in
 * any key inflection. Returns the problem instead when the text is not such a query.
 */
export function compileFilter(text: string): EventFilter | string {
  let query: unknown
  try {
    query = JSON.parse(text)
  } catch (error) {
    return `not JSON (${(error as Error).message})`
  }
  if (typeof query !== 'object' || query === null || Array.isArray(query)) return 'must be a JSON object, a query such as {"payload.data.attributes.status":"approved"}'
  const refused = codeOperatorIn(query)
  if (refused) return `${refused} is refused: filters may not run code`
  const kebab = kebabQuery(query)
  let matches: (value: unknown) => boolean
  try {
    // sift is CommonJS: its function is the module and, as typed here, the module's `default`.
    matches = sift.default(kebab as Parameters<typeof sift.default>[0])
    // Some mistakes (`{"$type": 2}`) pass sift's compilation and throw on every event: found here
    // by trying the query on documents that give each of its fields a value of each JSON type.
    for (const probe of probesFor(kebab)) matches(probe)
  } catch (error) {
    return (error as Error).message
  }
  return (attributes) => matches(kebabOnce(attributes))
}

/** An event's attributes in kebab-case, made once however many subscribers' filters read them. */
const kebabCopies = new WeakMap<object, unknown>()

function kebabOnce(attributes: Record<string, unknown>): unknown {
  let copy = kebabCopies.get(attributes)
  if (copy === undefined) {
    copy = kebabKeys(attributes)
    kebabCopies.set(attributes, copy)
  }
  return copy
}

const PROBE_VALUES: unknown[] = [1, 'x', true, null, [1], { x: 1 }]

function probesFor(query: unknown): Record<string, unknown>[] {
  const paths = fieldPaths(query)
  return [{}, ...PROBE_VALUES.map((value) => {
    const probe: Record<string, unknown> = {}
    for (const path of paths) {
      const segments = path.split('.')
      let node = probe
      for (const segment of segments.slice(0, -1)) node = (node[segment] ??= {}) as Record<string, unknown>
      node[segments.at(-1)!] = value
    }
    return probe
  })]
}

function fieldPaths(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(fieldPaths)
  if (typeof value !== 'object' || value === null) return []
  return Object.entries(value).flatMap(([key, child]) => (key.startsWith('$') ? fieldPaths(child) : [key]))
}

/** Field paths segment by segment in kebab-case; operators (`$elemMatch`) and values as written. */
function kebabQuery(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(kebabQuery)
  if (typeof value !== 'object' || value === null) return value
  const copy: Record<string, unknown> = {}
  for (const [key, child] of Object.entries(value)) {
    copy[key.startsWith('$') ? key : key.split('.').map(kebabCase).join('.')] = kebabQuery(child)
  }
  return copy
}

function codeOperatorIn(value: unknown): string | undefined {
  if (Array.isArray(value)) return value.map(codeOperatorIn).find(Boolean)
  if (typeof value !== 'object' || value === null) return undefined
  for (const [key, child] of Object.entries(value)) {
    if (CODE_OPERATORS.has(key)) return key
    const inner = codeOperatorIn(child)
    if (inner) return inner
  }
  return undefined
}
