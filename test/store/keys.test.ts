import t from 'tap'
import { backfillKeys } from '../../src/store/keys.js'

t.test('backfill keys keep the strings existing deployments hold data under', async (t) => {
  const keys = backfillKeys('persona-relay')
  t.equal(keys.lock, 'persona-relay:backfill:lock')
  t.equal(keys.job('bf_1'), 'persona-relay:backfill:job:bf_1')
  t.equal(keys.newest, 'persona-relay:backfill:newest')
})
