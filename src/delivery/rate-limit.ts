import type { ScriptedRedis } from '../store/scripts.js'

/**
 * SUBSCRIBER_<NAME>_RATE_LIMIT across every instance: attempts start at least `intervalMs` apart,
 * on a schedule kept in Redis (rate-permit-1.lua). A delivery waits for its turn holding its slot;
 * waiting spends no attempt and counts no failure.
 */
export class RateLimit {
  constructor(
    private readonly redis: ScriptedRedis,
    private readonly key: string,
    private readonly intervalMs: number
  ) {}

  /**
   * Reserves this attempt's turn: how long it must wait before it starts. With `longestWaitMs`,
   * undefined and nothing reserved if its turn is further away than that.
   */
  async reserve(longestWaitMs = -1): Promise<number | undefined> {
    const wait = (await this.redis.ratePermit(this.key, this.intervalMs, longestWaitMs)) as number
    return wait < 0 ? undefined : wait
  }

  /** Waits for this attempt's turn, however far away. */
  async turn(): Promise<void> {
    await waitMs((await this.reserve())!)
  }
}

export async function waitMs(ms: number): Promise<void> {
  if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms))
}
