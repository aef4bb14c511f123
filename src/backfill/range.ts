/** Persona lists an organisation's events for 30 days. */
export const API_WINDOW_MS = 30 * 24 * 3600 * 1000

const DURATION = /^(\d{1,6})(s|m|h|d)$/
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
/** A date, or a date and time with its zone: a time without a zone would mean the host's local time. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/

/** `2h`, `30m`, `7d`, `90s` back from now, or an ISO 8601 time; undefined when it is neither. */
export function parseTimeArgument(text: string, nowMs: number): number | undefined {
  const trimmed = text.trim()
  const duration = DURATION.exec(trimmed)
  if (duration) return nowMs - Number(duration[1]) * UNIT_MS[duration[2]!]!
  if (!ISO_TIME.test(trimmed)) return undefined
  const time = Date.parse(trimmed)
  return Number.isNaN(time) ? undefined : time
}

export interface BackfillRange {
  sinceMs: number
  untilMs: number
}

const TIME_FORMS = 'an ISO 8601 time with its zone (2026-11-27T08:00:00Z) or a duration back from now (30m, 2h, 7d)'

/**
 * The window a backfill walks. `maxAgeMs` is the furthest back it may reach: Persona's 30 days, or
 * less when event ids are remembered for less (DEDUPE_TTL_SECONDS), as older events would then be
 * forwarded a second time. Problems are described without the values sent.
 */
export function resolveRange(
  input: { since?: string | undefined; until?: string | undefined },
  nowMs: number,
  maxAgeMs: number
): BackfillRange | { problem: string } {
  if (input.since === undefined || input.since.trim() === '') return { problem: 'since is required' }
  const sinceMs = parseTimeArgument(input.since, nowMs)
  if (sinceMs === undefined) return { problem: `since must be ${TIME_FORMS}` }
  const untilMs = input.until === undefined ? nowMs : parseTimeArgument(input.until, nowMs)
  if (untilMs === undefined) return { problem: `until must be ${TIME_FORMS}` }
  if (sinceMs >= Math.min(untilMs, nowMs)) return { problem: 'since must be earlier than until and than now' }
  if (sinceMs < nowMs - maxAgeMs) {
    return { problem: `since must be within the last ${formatDuration(maxAgeMs)} (Persona's 30-day window, and no further back than DEDUPE_TTL_SECONDS)` }
  }
  return { sinceMs, untilMs: Math.min(untilMs, nowMs) }
}

/** The furthest back a backfill may reach under this de-duplication window. */
export function maxBackfillAgeMs(dedupeTtlSeconds: number): number {
  return Math.min(API_WINDOW_MS, dedupeTtlSeconds * 1000)
}

function formatDuration(ms: number): string {
  if (ms % UNIT_MS.d! === 0) return `${ms / UNIT_MS.d!}d`
  if (ms % UNIT_MS.h! === 0) return `${ms / UNIT_MS.h!}h`
  return `${Math.floor(ms / 1000)}s`
}
