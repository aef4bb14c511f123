import type { KeyLayout } from '../config/redis.js'
import type { StoreKeys } from './keys.js'
import type { RedisClient } from './redis.js'

/**
 * The key layout a Redis holds data in is recorded the first time a relay uses it, and every later
 * start compares its own: with another INTAKE_PARTITIONS an event's id would be looked up in another
 * partition (a redelivery taken for a new event) and the old streams' backlog never read. A store
 * written before layouts were recorded has the single node's untagged stream.
 * Returns what is wrong, or undefined when the layouts agree.
 */
export async function checkLayout(redis: RedisClient, keys: StoreKeys, layout: KeyLayout): Promise<string | undefined> {
  const wanted = describe(layout)
  let stored = await redis.get(keys.layout)
  if (stored === null) {
    // The untagged layout's stream lives on once created (fan-out makes it with its group).
    const untaggedData = layout.tagged && (await redis.exists(keys.untaggedIntake)) === 1
    if (untaggedData) stored = describe({ partitions: 1, tagged: false })
    else if ((await redis.set(keys.layout, wanted, 'NX')) === 'OK') return undefined
    else stored = await redis.get(keys.layout)
  }
  if (stored === wanted || stored === null) return undefined
  const { partitions, tagged } = JSON.parse(stored) as Omit<KeyLayout, 'prefix'>
  return `INTAKE_PARTITIONS: this Redis holds the relay's data (prefix ${layout.prefix}) in ${partitions} intake partition${partitions === 1 ? '' : 's'}` +
    `${tagged ? ' with hash tags' : ' without hash tags'}, and this instance is configured for ${layout.partitions}` +
    `${layout.tagged ? ' with hash tags' : ' without'}; events and their de-duplication records would not be found. ` +
    `Set INTAKE_PARTITIONS=${partitions} and the same Redis mode, or move to a new REDIS_PREFIX once the old one has drained (README: "Changing INTAKE_PARTITIONS")`
}

function describe({ partitions, tagged }: Omit<KeyLayout, 'prefix'>): string {
  return JSON.stringify({ partitions, tagged })
}
