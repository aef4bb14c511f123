/** How far a retry delay may stray from the schedule, so that retries of a burst spread out. */
export const JITTER = 0.2

/**
 * Delay before the next attempt, in milliseconds, after `attemptsMade` attempts have failed.
 * The schedule lists the seconds before each retry; its last value repeats if attempts outlast it.
 */
export function retryDelayMs(schedule: readonly number[], attemptsMade: number, random = Math.random): number {
  const index = Math.min(Math.max(attemptsMade - 1, 0), schedule.length - 1)
  const seconds = schedule[index] ?? 0
  return Math.round(seconds * 1000 * (1 - JITTER + 2 * JITTER * random()))
}
