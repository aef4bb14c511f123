import { until } from './processes.js'
import type { ChaosSubscriber, Sender } from './traffic.js'

export interface ScenarioResult {
  scenario: number
  title: string
  sent: number
  acknowledged: number
  /** Deliveries owed: acknowledged events times the subscribers each one matches. */
  expected: number
  delivered: number
  lost: number
  duplicates: number
  seconds: number
  notes: string[]
  failures: string[]
  /** A measurement of what a setting loses (REDIS_WAIT_REPLICAS=0): a loss is reported, not a failure. */
  lossMeasured?: boolean
}

export interface Tally {
  expected: number
  delivered: number
  lost: number
  duplicates: number
  lostIds: string[]
}

/** Expected (acknowledged, matching) deliveries per subscriber, and what arrived. */
export function tally(sender: Sender, subscribers: readonly ChaosSubscriber[]): Tally {
  const result: Tally = { expected: 0, delivered: 0, lost: 0, duplicates: 0, lostIds: [] }
  for (const subscriber of subscribers) {
    for (const event of sender.events) {
      if (!event.acked || !subscriber.matches(event.name)) continue
      result.expected += 1
      const delivery = subscriber.deliveries.get(event.id)
      if (delivery) result.delivered += 1
      else {
        result.lost += 1
        if (result.lostIds.length < 5) result.lostIds.push(`${subscriber.name}:${event.id}`)
      }
    }
    for (const delivery of subscriber.deliveries.values()) result.duplicates += delivery.count - 1
  }
  return result
}

/**
 * Waits (bounded) until every acknowledged event reached every matching subscriber, then a little
 * longer so that late duplicates are counted too.
 */
export async function awaitDeliveries(sender: Sender, subscribers: readonly ChaosSubscriber[], timeoutMs: number, settleMs = 2000): Promise<Tally> {
  await until(() => tally(sender, subscribers).lost === 0, timeoutMs, 100)
  await new Promise((resolve) => setTimeout(resolve, settleMs))
  return tally(sender, subscribers)
}

export function statusLine(sender: Sender): string {
  return [...sender.statuses].sort().map(([status, count]) => `${status}×${count}`).join(' ')
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}
