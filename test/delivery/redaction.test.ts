import t from 'tap'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { admin, ADMIN_TOKEN, eventView } from '../helpers/admin.js'
import { postEvent, storedBody, waitForDelivery, waitForJob } from '../helpers/delivery.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const about = (objectId: string, name = 'inquiry.approved', extra: Record<string, unknown> = {}) => (id: string) =>
  personaEvent(id, name, {
    payload: { data: { type: 'inquiry', id: objectId, attributes: { 'name-first': 'Zoë', birthdate: '1990-04-01' } } },
    ...extra
  })

t.test('a redaction removes the bodies of a pending retry and of a dead letter, fails the retry as redacted, and refuses both replays', async (t) => {
  // RETRY waits a minute between attempts; DEAD has one attempt; AUDIT takes the redaction itself.
  const retry = await startSubscriber(() => ({ status: 500 }))
  const dead = await startSubscriber(() => ({ status: 500 }))
  const audit = await startSubscriber()
  t.teardown(() => Promise.all([retry.close(), dead.close(), audit.close()]))
  const { app, logs } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_RETRY_URL: retry.url,
    SUBSCRIBER_RETRY_EVENTS: 'inquiry.approved',
    SUBSCRIBER_RETRY_MAX_ATTEMPTS: '5',
    SUBSCRIBER_RETRY_RETRY_SCHEDULE: '60',
    SUBSCRIBER_DEAD_URL: dead.url,
    SUBSCRIBER_DEAD_EVENTS: 'inquiry.approved',
    SUBSCRIBER_DEAD_MAX_ATTEMPTS: '1',
    SUBSCRIBER_AUDIT_URL: audit.url,
    SUBSCRIBER_AUDIT_EVENTS: 'inquiry.redacted'
  })
  const approved = uniqueEventId()
  const other = uniqueEventId()
  await postEvent(app, about('inq_REDACTME')(approved))
  await postEvent(app, about('inq_KEEPME')(other))
  for (const eventId of [approved, other]) {
    await waitForJob(app, 'RETRY', eventId, 'delayed')
    await waitForDelivery(app, 'DEAD', eventId, 'failed')
  }
  t.ok(await storedBody(app, approved), 'the body is kept for the retry and the dead letter')

  const redaction = uniqueEventId()
  await postEvent(app, about('inq_REDACTME', 'inquiry.redacted', { 'created-at': '2026-11-27T11:00:00.000Z' })(redaction))
  await audit.waitFor(1)
  t.equal(JSON.parse(audit.received[0]!.body.toString()).data.id, redaction, 'the redaction itself is delivered as usual')

  const retried = await waitForDelivery(app, 'RETRY', approved, 'failed')
  t.equal(retried.deadLetterReason, 'redacted', `the pending retry fails at once, as redacted (${retried.failedReason})`)
  t.equal(retried.attempts.length, 1, 'its history holds only the attempt made before')
  t.equal(retry.received.filter((request) => request.body.toString().includes(approved)).length, 1, 'it was not sent again')
  t.equal(await storedBody(app, approved), null, 'its body is gone')
  const view = await eventView(app, approved)
  t.equal(view.bodyRedacted, true)
  t.match(view.deliveries.find((delivery) => delivery.subscriber === 'DEAD'), { state: 'failed' }, 'the dead letter stays, metadata only')

  for (const subscriber of ['RETRY', 'DEAD']) {
    const answer = await admin(app, 'POST', `/admin/deliveries/${subscriber}.${approved}/retry`)
    t.equal(answer.statusCode, 409, `${subscriber}'s replay is refused`)
    t.equal(answer.body.code, 'EVENT_REDACTED')
  }

  t.ok(await storedBody(app, other), 'another object keeps its body')
  t.equal((await app.delivery.queues.get('RETRY')!.getJobState(other)), 'delayed', 'and its retry stays due later')
  t.notOk((await eventView(app, other)).bodyRedacted)

  const line = await waitUntil('the redaction log line', async () => logs.lines.find((entry) => entry.msg === 'event redacted'))
  t.match(line, { objectId: 'inq_REDACTME', eventId: redaction, bodiesRemoved: 1 })
  t.notOk(logs.text().includes('Zoë') || logs.text().includes('1990-04-01'), 'no personal data in any log line')
})

t.test('a redaction no subscriber wants is still carried out', async (t) => {
  const retry = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => retry.close())
  const { app, logs } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_RETRY_URL: retry.url,
    SUBSCRIBER_RETRY_EVENTS: 'inquiry.approved',
    SUBSCRIBER_RETRY_RETRY_SCHEDULE: '60'
  })
  const approved = uniqueEventId()
  await postEvent(app, about('inq_NOBODY')(approved))
  await waitForJob(app, 'RETRY', approved, 'delayed')
  const redaction = uniqueEventId()
  await postEvent(app, about('inq_NOBODY', 'inquiry.redacted')(redaction))
  t.equal((await waitForDelivery(app, 'RETRY', approved, 'failed')).deadLetterReason, 'redacted')
  t.equal(await storedBody(app, approved), null)
  t.same((await eventView(app, redaction)).deliveries, [], 'the redaction was routed to no one')
  await waitUntil('the redaction log line', async () => logs.lines.find((entry) => entry.msg === 'event redacted' && entry.objectId === 'inq_NOBODY'))
  t.equal(await app.redis.xlen(app.eventStore.keys.intake(0)), 0, 'its intake entry is acknowledged and gone')
})

t.test('an event named .redacted without an object, or about another object, removes nothing', async (t) => {
  const retry = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => retry.close())
  const { app, logs } = await startRelay(t, { SUBSCRIBER_RETRY_URL: retry.url, SUBSCRIBER_RETRY_EVENTS: 'inquiry.approved', SUBSCRIBER_RETRY_RETRY_SCHEDULE: '60' })
  const approved = uniqueEventId()
  await postEvent(app, about('inq_STAYS')(approved))
  await waitForJob(app, 'RETRY', approved, 'delayed')
  await postEvent(app, personaEvent(uniqueEventId(), 'inquiry.redacted', { payload: {} }))
  await postEvent(app, about('inq_SOMEONEELSE', 'inquiry.redacted')(uniqueEventId()))
  await waitUntil('the other redaction', async () => logs.lines.find((entry) => entry.msg === 'event redacted' && entry.objectId === 'inq_SOMEONEELSE'))
  t.equal(logs.lines.filter((entry) => entry.msg === 'event redacted').length, 1, 'the one without an object is not a redaction')
  t.ok(await storedBody(app, approved), 'the body stays')
  t.equal(await app.delivery.queues.get('RETRY')!.getJobState(approved), 'delayed')
})
