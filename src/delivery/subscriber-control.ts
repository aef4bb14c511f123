import type { Job, Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { SubscriberConfig } from '../config/index.js'
import { logAttempt } from './attempts.js'
import { pendingImmediateAttempt, withoutImmediateAttempt, type DeliveryJobData } from './job.js'
import { countsTowardsBreaker } from './retry-policy.js'
import type { DeliveryOutcome } from './worker.js'

/** How many of the oldest waiting deliveries the probe takes turns among. */
const PROBE_ROTATION = 5

export type PauseReason = 'breaker' | 'manual'

/** The share of the probe interval for which one instance's probe keeps the others from probing. */
const PROBE_LOCK_SHARE = 0.9

export interface SubscriberState {
  paused: boolean
  reason?: PauseReason
  since?: string
  consecutiveFailures: number
}

export type ProbeAttempt = (job: Job<DeliveryJobData>) => Promise<DeliveryOutcome>

export interface SubscriberControlOptions {
  subscriber: SubscriberConfig
  queue: Queue<DeliveryJobData>
  redis: Redis
  prefix: string
  probeIntervalMs: number
  log: FastifyBaseLogger
}

/**
 * Pause state and circuit breaker of one subscriber, shared by every instance through Redis.
 * After `pauseAfterFailures` consecutive failed attempts the subscriber's queue is paused (BullMQ's
 * global pause): deliveries wait without spending attempts. A probe then re-sends one delivery per
 * interval; the first success resumes the queue. An operator can pause and resume by hand.
 */
export class SubscriberControl {
  /** The consecutive-failure count; a delivered attempt deletes it (with the body's release, worker.ts). */
  readonly failuresKey: string
  private readonly pauseKey: string
  private readonly probeLockKey: string
  private readonly probeTurnKey: string

  constructor(private readonly options: SubscriberControlOptions) {
    const base = `${options.prefix}:subscriber:${options.subscriber.name}`
    this.failuresKey = `${base}:failures`
    this.pauseKey = `${base}:pause`
    this.probeLockKey = `${base}:probe-lock`
    this.probeTurnKey = `${base}:probe-turn`
  }

  get name(): string {
    return this.options.subscriber.name
  }

  async recordFailure(): Promise<void> {
    const failures = await this.options.redis.incr(this.failuresKey)
    // Exactly one attempt crosses the threshold, whichever instance made it.
    if (failures === this.options.subscriber.pauseAfterFailures) await this.pause('breaker')
  }

  async pause(reason: PauseReason): Promise<void> {
    const { redis, queue, log } = this.options
    // An attempt in flight when an operator paused may still cross the threshold: the operator's
    // pause stays, or the next probe would lift it.
    if (reason === 'breaker' && (await queue.isPaused())) return
    await redis.hset(this.pauseKey, { reason, since: new Date().toISOString() })
    await queue.pause()
    const consecutiveFailures = Number(await redis.get(this.failuresKey)) || 0
    log.warn({ subscriber: this.name, reason, consecutiveFailures }, 'subscriber paused')
  }

  async resume(by: 'probe' | 'manual'): Promise<void> {
    const { redis, queue, log } = this.options
    await redis.del(this.pauseKey, this.failuresKey, this.probeTurnKey)
    await queue.resume()
    log.info({ subscriber: this.name, by }, 'subscriber resumed')
  }

  async state(): Promise<SubscriberState> {
    const { redis, queue } = this.options
    const [pause, failures, paused] = await Promise.all([
      redis.hgetall(this.pauseKey),
      redis.get(this.failuresKey),
      queue.isPaused()
    ])
    return {
      paused,
      ...(paused ? { reason: (pause.reason as PauseReason | undefined) ?? 'manual' } : {}),
      ...(paused && pause.since ? { since: pause.since } : {}),
      consecutiveFailures: Number(failures) || 0
    }
  }

  /**
   * One probe, if the breaker holds the subscriber paused and no other instance probed within the
   * interval. Returns whether the subscriber was resumed.
   */
  async probe(attempt: ProbeAttempt): Promise<boolean> {
    const { redis, probeIntervalMs } = this.options
    const state = await this.state()
    if (!state.paused || state.reason !== 'breaker') return false
    // Shorter than the interval: a lock taken a few milliseconds after one tick would otherwise still
    // hold at the next, and the probe would run every other interval.
    const locked = await redis.set(this.probeLockKey, '1', 'PX', Math.max(1, Math.floor(probeIntervalMs * PROBE_LOCK_SHARE)), 'NX')
    if (locked !== 'OK') return false
    const job = await this.probeCandidate()
    if (!job) return false
    if (!job.data.deliveredByProbe) {
      // Handed over by fan-out after the breaker paused the queue, its failed attempt was never
      // recorded by a worker: it joins the history before the probe's own attempt.
      const handedOver = pendingImmediateAttempt(job)
      if (handedOver) {
        await logAttempt(job, handedOver.record)
        await job.updateData(withoutImmediateAttempt(job.data))
      }
      const delivery = await attempt(job)
      if (delivery.kind === 'attempted') {
        await logAttempt(job, delivery.record)
        if (delivery.verdict.kind !== 'delivered') {
          if (countsTowardsBreaker(delivery.result)) await redis.incr(this.failuresKey)
          return false
        }
      }
      // The job itself is still queued: when the queue resumes, the worker completes it unsent and
      // releases its body.
      await job.updateData({ ...job.data, deliveredByProbe: true })
      // Delivered before, by an attempt cut off before it completed: that says nothing of the subscriber now.
      if (delivery.kind === 'settled') return false
    }
    // Left delayed, it would complete only when its retry fell due, hours later maybe, and until then
    // a probe after the next outage could pick it and resume the subscriber without sending anything.
    if (await job.isDelayed()) await job.promote()
    await this.resume('probe')
    return true
  }

  /**
   * Probes take turns among the oldest few waiting and delayed deliveries (while the queue is
   * paused, due retries stay in the delayed set): always probing the oldest would let one delivery
   * the subscriber can never take, which spends no attempts while paused, hold it paused for ever.
   */
  private async probeCandidate(): Promise<Job<DeliveryJobData> | undefined> {
    const { queue, redis } = this.options
    const [turn, waiting, delayed] = await Promise.all([
      redis.incr(this.probeTurnKey),
      queue.getJobs(['wait'], 0, PROBE_ROTATION - 1, true),
      queue.getJobs(['delayed'], 0, PROBE_ROTATION - 1, true)
    ])
    const candidates = [...waiting, ...delayed].filter(Boolean)
    return candidates.length > 0 ? candidates[turn % candidates.length] : undefined
  }


}
