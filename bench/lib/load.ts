import autocannon, { type Result } from 'autocannon'
import { Pool } from 'undici'
import { nowMs, signedRequest, WEBHOOK_PATH } from './events.js'

export const CONNECTIONS = 50

export interface LoadResult {
  rps: number
  p50: number
  p99: number
  total: number
  ok: number
  non2xx: number
  errors: number
  seconds: number
}

function summarize(result: Result, seconds: number): LoadResult {
  return {
    // autocannon's per-second average and duration are coarse for short runs: requests over elapsed time instead.
    rps: (result['2xx'] + result.non2xx) / seconds,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result['2xx'] + result.non2xx,
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    seconds
  }
}

/** 50 connections of unique, freshly signed 2 KB events, for a duration or an amount (both bounded). */
export async function blast(baseUrl: string, bound: { seconds: number } | { amount: number }, badSignature = false): Promise<LoadResult> {
  const started = performance.now()
  const result = await autocannon({
    url: baseUrl,
    connections: CONNECTIONS,
    timeout: 10,
    ...('seconds' in bound ? { duration: bound.seconds } : { amount: bound.amount, duration: 120 }),
    requests: [{
      method: 'POST',
      path: WEBHOOK_PATH,
      setupRequest: (request) => ({ ...request, ...signedRequest({ badSignature }) })
    }]
  })
  return summarize(result, (performance.now() - started) / 1000)
}

export interface PacedResult {
  sent: number; ok: number; failed: number; seconds: number; maxInFlight: number; lastSentAt: number
  /** Time to the relay's answer (what Persona waits for), in ms. */
  answerP50: number | null; answerP99: number | null
}

/**
 * Sends events at a fixed rate (not closed-loop like autocannon), each stamped with its send time
 * just before it leaves, so a subscriber can measure end-to-end latency. Bounded: at most
 * rate × seconds events and 2,000 in flight.
 */
export async function paced(baseUrl: string, rate: number, seconds: number): Promise<PacedResult> {
  const pool = new Pool(baseUrl, { connections: CONNECTIONS, pipelining: 1 })
  const total = Math.round(rate * seconds)
  const started = nowMs()
  let sent = 0
  let ok = 0
  let failed = 0
  let inFlight = 0
  let maxInFlight = 0
  let lastSentAt = started
  const pending = new Set<Promise<void>>()
  const answers: number[] = []
  while (sent < total) {
    const due = Math.min(total, Math.floor(((nowMs() - started) / 1000) * rate))
    while (sent < due && inFlight < 2000) {
      sent += 1
      inFlight += 1
      maxInFlight = Math.max(maxInFlight, inFlight)
      lastSentAt = nowMs()
      const sentAt = lastSentAt
      const { body, headers } = signedRequest({ sentAt })
      const request: Promise<void> = pool.request({ method: 'POST', path: WEBHOOK_PATH, headers, body })
        .then(async (response) => {
          await response.body.dump()
          answers.push(nowMs() - sentAt)
          if (response.statusCode === 200) ok += 1
          else failed += 1
        }, () => { failed += 1 })
        .finally(() => { inFlight -= 1; pending.delete(request) })
      pending.add(request)
    }
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  await Promise.all(pending)
  await pool.close()
  answers.sort((a, b) => a - b)
  const percentile = (p: number) => (answers.length > 0 ? answers[Math.min(answers.length - 1, Math.floor(p * answers.length))]! : null)
  return { sent, ok, failed, seconds: (lastSentAt - started) / 1000, maxInFlight, lastSentAt, answerP50: percentile(0.5), answerP99: percentile(0.99) }
}
