import { randomUUID } from 'node:crypto'
import type { RedisClient } from '../store/redis.js'

const RENEW_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

export interface HeldLock {
  /** Aborted when the lock is lost (it expired, or Redis could not renew it in time): stop working. */
  signal: AbortSignal
  release(): Promise<void>
}

/**
 * A lock across every instance on one Redis: SET NX PX with a token of its own, renewed while held,
 * and released only by its holder (compare and delete), so that a holder whose lock expired cannot
 * release the next holder's. The token starts with `holder`, for isHeldBy.
 */
export async function acquireLock(redis: RedisClient, key: string, ttlMs: number, holder: string): Promise<HeldLock | undefined> {
  const token = `${holder} ${randomUUID()}`
  if ((await redis.set(key, token, 'PX', ttlMs, 'NX')) !== 'OK') return undefined
  const lost = new AbortController()
  let renewedAt = Date.now()
  const renew = async () => {
    try {
      if ((await redis.eval(RENEW_SCRIPT, 1, key, token, ttlMs)) === 1) renewedAt = Date.now()
      else lost.abort(new Error('lock taken over'))
    } catch {
      // Redis did not answer this time; the lock is only given up once it may have expired.
      if (Date.now() - renewedAt >= ttlMs) lost.abort(new Error('lock not renewed in time'))
    }
  }
  const timer = setInterval(() => void renew(), Math.max(Math.floor(ttlMs / 3), 10))
  timer.unref()
  return {
    signal: lost.signal,
    async release() {
      clearInterval(timer)
      await redis.eval(RELEASE_SCRIPT, 1, key, token).catch(() => undefined)
    }
  }
}

/** Whether `holder` holds the lock now, whichever instance it runs on. */
export async function isHeldBy(redis: RedisClient, key: string, holder: string): Promise<boolean> {
  return (await redis.get(key))?.startsWith(`${holder} `) ?? false
}
