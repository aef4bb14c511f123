import type { Job } from 'bullmq'
import type { AttemptRecord, AttemptResult } from './types.js'

/** The history is capped so that a delivery retried for days cannot grow without bound. */
export const KEPT_ATTEMPTS = 200

export function attemptRecord(result: AttemptResult, attempt: number, startedAt: Date, probe = false): AttemptRecord {
  return {
    attempt,
    at: startedAt.toISOString(),
    durationMs: result.durationMs,
    outcome: result.outcome,
    ...(result.status !== undefined ? { status: result.status } : {}),
    ...(result.errorClass ? { errorClass: result.errorClass } : {}),
    ...(result.responseExcerpt ? { response: result.responseExcerpt } : {}),
    ...(probe ? { probe: true as const } : {})
  }
}

function isAttemptRecord(value: unknown): value is AttemptRecord {
  return typeof value === 'object' && value !== null && typeof (value as Partial<AttemptRecord>).attempt === 'number'
}

/** Appends an attempt to its delivery's history (a BullMQ job log row, read back by parseAttemptLog). */
export async function logAttempt(job: Job, record: AttemptRecord): Promise<void> {
  await job.log(JSON.stringify(record))
}

/** The history in a job's log rows; a row that is not an attempt record (`null` parses too) is skipped. */
export function parseAttemptLog(rows: readonly string[]): AttemptRecord[] {
  return rows.flatMap((row) => {
    try {
      const parsed: unknown = JSON.parse(row)
      return isAttemptRecord(parsed) ? [parsed] : []
    } catch {
      return []
    }
  })
}
