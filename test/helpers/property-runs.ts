/**
 * How many generated cases a property-based test runs: small by default so that `npm test` stays
 * fast, PROPERTY_RUNS (set by `npm run chaos` to 10000) for the full count.
 */
export function propertyRuns(defaultRuns: number): number {
  const fromEnv = Number(process.env.PROPERTY_RUNS)
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : defaultRuns
}
