import t from 'tap'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { deliveryView, postEvent, waitForDelivery } from '../helpers/delivery.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

// Regression (found by `npm run chaos`): the probe always re-sent the oldest waiting delivery, and a
// delivery the subscriber can never take spends no attempts while paused, so it kept the
// subscriber paused for ever with everything else waiting behind it.
t.test('a delivery the subscriber always refuses does not keep it paused: probes take turns', async (t) => {
  const poisoned = uniqueEventId()
  let recovered = false
  const subscriber = await startSubscriber((request) =>
    request.headers['webhook-id'] === poisoned || !recovered ? { status: 500 } : { status: 200 })
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_PAUSE_AFTER_FAILURES: '2',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '4',
    SUBSCRIBER_CRM_CONCURRENCY: '1',
    DELIVERY_RETRY_SCHEDULE: '0.05',
    BREAKER_PROBE_INTERVAL_SECONDS: '0.2'
  })
  const queue = app.delivery.queues.get('CRM')!
  const others = [uniqueEventId(), uniqueEventId(), uniqueEventId()]
  await postEvent(app, personaEvent(others[0]!))
  await waitUntil('the breaker to pause CRM', () => queue.isPaused())
  // The refused delivery now waits at the head of the queue, the first one in the delayed set.
  await postEvent(app, personaEvent(poisoned))
  for (const id of others.slice(1)) await postEvent(app, personaEvent(id))
  recovered = true

  await waitUntil('a probe of another delivery to resume CRM', async () => !(await queue.isPaused()), 10_000)
  for (const id of others) await waitForDelivery(app, 'CRM', id, 'completed')
  t.not((await deliveryView(app, 'CRM', poisoned))?.state, 'completed', 'the refused delivery was never taken')
})
