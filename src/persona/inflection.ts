/**
 * Persona sends a webhook's keys in the inflection its webhook is set to (kebab, camel or snake),
 * and the same event's keys change with it. Reading them in kebab-case, whatever was sent, lets one
 * filter or query match every spelling.
 */
export function kebabCase(key: string): string {
  // Persona's camel-case drops the dash before a digit (`address-street-1` is `addressStreet1`), so
  // no spelling keeps it.
  return key.replace(/_/g, '-').replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/-(?=\d)/g, '').toLowerCase()
}

/** A copy of a parsed JSON value with every object key in kebab-case; values are untouched. */
export function kebabKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(kebabKeys)
  if (typeof value !== 'object' || value === null) return value
  const copy: Record<string, unknown> = {}
  for (const [key, child] of Object.entries(value)) copy[kebabCase(key)] = kebabKeys(child)
  return copy
}
