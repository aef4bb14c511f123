import type { FastifyBaseLogger } from 'fastify'
import type { RedisClient } from '../store/redis.js'
import type { SubscriberConfig } from '../config/index.js'
import type { StoreKeys } from '../store/keys.js'
import type { DeliveryJob, DeliveryQueue } from './queue.js'

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

/**
 * A probe's attempt at a waiting delivery: delivered (and completed), failed, found delivered
 * before, skipped as stale, or not made because an ordered delivery's turn had not come.
 */
export type ProbeAttempt = (job: DeliveryJob) => Promise<'delivered' | 'failed' | 'settled' | 'skipped' | 'waiting'>

export interface SubscriberControlOptions {
  subscriber: SubscriberConfig
  queue: DeliveryQueue
  redis: RedisClient
  keys: StoreKeys
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
  private readonly keys: ReturnType<StoreKeys['subscriber']>
  private readonly listeners: (() => void)[] = []

  constructor(private readonly options: SubscriberControlOptions) {
    this.keys = options.keys.subscriber(options.subscriber.name)
  }

  get name(): string {
    return this.options.subscriber.name
  }

  /** Told of every pause and resumption made here (fan-out's cached pause flags, first-attempt.ts). */
  onChange(listener: () => void): void {
    this.listeners.push(listener)
  }

  async recordFailure(): Promise<void> {
    const failures = await this.options.redis.incr(this.keys.failures)
    // Exactly one attempt crosses the threshold, whichever instance made it.
    if (failures === this.options.subscriber.pauseAfterFailures) await this.pause('breaker')
  }

  /** A delivered attempt ends the run of failures, sent with its completion (outcomes.ts). */
  async resetFailures(): Promise<void> {
    await this.options.redis.del(this.keys.failures)
  }

  async pause(reason: PauseReason): Promise<void> {
    const { redis, queue, log } = this.options
    // An attempt in flight when an operator paused may still cross the threshold: the operator's
    // pause stays, or the next probe would lift it.
    if (reason === 'breaker' && (await queue.isPaused())) return
    await redis.hset(this.keys.pause, { reason, since: new Date().toISOString() })
    await queue.pause()
    for (const listener of this.listeners) listener()
    const consecutiveFailures = Number(await redis.get(this.keys.failures)) || 0
    log.warn({ subscriber: this.name, reason, consecutiveFailures }, 'subscriber paused')
  }

  async resume(by: 'probe' | 'manual'): Promise<void> {
    const { redis, queue, log } = this.options
    await redis.del(this.keys.pause, this.keys.failures, this.keys.probeTurn)
    await queue.resume()
    for (const listener of this.listeners) listener()
    log.info({ subscriber: this.name, by }, 'subscriber resumed')
  }

  async state(): Promise<SubscriberState> {
    const { redis, queue } = this.options
    const [pause, failures, paused] = await Promise.all([
      redis.hgetall(this.keys.pause),
      redis.get(this.keys.failures),
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
    const locked = await redis.set(this.keys.probeLock, '1', 'PX', Math.max(1, Math.floor(probeIntervalMs * PROBE_LOCK_SHARE)), 'NX')
    if (locked !== 'OK') return false
    const job = await this.probeCandidate()
    if (!job) return false
    // Delivered before, by an attempt cut off before its job completed: that says nothing of the subscriber now.
    if ((await attempt(job)) !== 'delivered') return false
    await this.resume('probe')
    return true
  }

  /**
   * Probes take turns among the oldest few waiting and delayed deliveries (while the queue is
   * paused, due retries stay in the delayed set): always probing the oldest would let one delivery
   * the subscriber can never take, which spends no attempts while paused, hold it paused for ever.
   */
  private async probeCandidate(): Promise<DeliveryJob | undefined> {
    const { queue, redis } = this.options
    const [turn, waiting, delayed] = await Promise.all([
      redis.incr(this.keys.probeTurn),
      queue.getJobs(['wait'], 0, PROBE_ROTATION - 1, true),
      queue.getJobs(['delayed'], 0, PROBE_ROTATION - 1, true)
    ])
    const candidates = [...waiting, ...delayed].filter(Boolean)
    return candidates.length > 0 ? candidates[turn % candidates.length] : undefined
  }
}
