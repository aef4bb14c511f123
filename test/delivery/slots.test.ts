import t from 'tap'
import { Slots } from '../../src/delivery/slots.js'

t.test('tryTake takes free slots only, and release frees them', async (t) => {
  const slots = new Slots(2)
  t.ok(slots.tryTake())
  t.ok(slots.tryTake())
  t.notOk(slots.tryTake(), 'both taken')
  slots.release()
  t.ok(slots.tryTake(), 'a released slot can be taken again')
  t.notOk(slots.tryTake())
})

t.test('a freed slot goes to whoever waits for one, before a later tryTake', async (t) => {
  const slots = new Slots(1)
  t.ok(slots.tryTake())
  const order: string[] = []
  const first = slots.take().then(() => order.push('first'))
  const second = slots.take().then(() => order.push('second'))
  t.notOk(slots.tryTake(), 'nothing free while others wait')
  slots.release()
  await first
  t.notOk(slots.tryTake(), 'the slot passed to the first waiter, not back to the pool')
  slots.release()
  await second
  t.same(order, ['first', 'second'], 'waiters are served in order')
  slots.release()
  t.ok(slots.tryTake(), 'free again once nobody waits')
})

t.test('run holds a slot for the task and releases it when the task throws', async (t) => {
  const slots = new Slots(1)
  let release!: () => void
  const running = slots.run(() => new Promise<void>((resolve) => (release = resolve)))
  await Promise.resolve()
  t.notOk(slots.tryTake(), 'held while the task runs')
  release()
  await running
  await t.rejects(slots.run(async () => {
    throw new Error('boom')
  }), /boom/)
  t.ok(slots.tryTake(), 'released after the failure')
})

t.test('takeWithin waits for a slot only so long, and gives up its place in line when it does not come', async (t) => {
  const slots = new Slots(1)
  t.ok(await slots.takeWithin(10), 'free: taken at once')
  const started = Date.now()
  t.notOk(await slots.takeWithin(50), 'none freed in time')
  t.ok(Date.now() - started >= 45)
  const waiting = slots.takeWithin(1000)
  slots.release()
  t.ok(await waiting, 'a slot freed while waiting goes to the waiter')
  slots.release()
  t.ok(slots.tryTake(), 'the waiter that gave up holds no place in line')
})
