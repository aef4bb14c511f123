import t from 'tap'
import fc from 'fast-check'
import { headerSafe } from '../../src/delivery/header-safe.js'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { postEvent, waitForDelivery } from '../helpers/delivery.js'
import { propertyRuns } from '../helpers/property-runs.js'
import { startSubscriber } from '../helpers/subscriber.js'

/** A value as a test name: TAP output is line-based, and U+2028 or a `#` would garble it. */
function shown(value: string): string {
  return JSON.stringify(value).replace(/[^\x20-\x22\x24-\x7e]/gu, (character) => `\\u{${character.codePointAt(0)!.toString(16)}}`)
}

const VISIBLE_ASCII_BUT_PERCENT = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).filter((c) => c !== '%').join('')

t.test('header values keep visible ASCII and percent-encode the UTF-8 bytes of everything else, and % itself', async (t) => {
  const cases: [string, string][] = [
    ['inquiry.approved', 'inquiry.approved'],
    ['2026-11-27T10:00:00.000Z', '2026-11-27T10:00:00.000Z'],
    ['report/watchlist.matched', 'report/watchlist.matched'],
    [VISIBLE_ASCII_BUT_PERCENT, VISIBLE_ASCII_BUT_PERCENT],
    ['', ''],
    ['100%', '100%25'],
    ['%25', '%2525'],
    ['a b', 'a%20b'],
    ['\t\0\x7f', '%09%00%7F'],
    ['2026-11-27T10:00:00.000Z\r\nx-evil: 1', '2026-11-27T10:00:00.000Z%0D%0Ax-evil:%201'],
    ['é', '%C3%A9'],
    ['\u00ff', '%C3%BF'],
    ['inquiry.approved\u2028x', 'inquiry.approved%E2%80%A8x'],
    ['inquiry.😀', 'inquiry.%F0%9F%98%80'],
    ['lone \ud800', 'lone%20%EF%BF%BD']
  ]
  for (const [value, expected] of cases) t.equal(headerSafe(value), expected, shown(value))
})

t.test('any well-formed string becomes visible ASCII that decodeURIComponent turns back into it', async (t) => {
  t.doesNotThrow(() => fc.assert(
    fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ unit: 'grapheme', maxLength: 300 })), (value) => {
      const safe = headerSafe(value)
      return /^[\x21-\x7e]*$/.test(safe) && decodeURIComponent(safe) === value
    }),
    { numRuns: propertyRuns(1000) }
  ))
})

t.test('regression: an event whose name or created-at is not header-safe is delivered with encoded headers and trips no breaker', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_PAUSE_AFTER_FAILURES: '1'
  })
  const events = [
    { id: uniqueEventId(), name: 'inquiry.approved\u2028x', createdAt: '2026-11-27T10:00:00.000Z', headers: ['inquiry.approved%E2%80%A8x', '2026-11-27T10:00:00.000Z'] },
    { id: uniqueEventId(), name: 'inquiry.😀', createdAt: '2026-11-27T10:00:00.000Z', headers: ['inquiry.%F0%9F%98%80', '2026-11-27T10:00:00.000Z'] },
    { id: uniqueEventId(), name: 'inquiry.approved', createdAt: '2026-11-27T10:00:00.000Z\r\nx-evil: 1', headers: ['inquiry.approved', '2026-11-27T10:00:00.000Z%0D%0Ax-evil:%201'] }
  ]
  const bodies = new Map(events.map((event) => [event.id, personaEvent(event.id, event.name, { 'created-at': event.createdAt })]))
  for (const event of events) await postEvent(app, bodies.get(event.id)!)

  const received = await subscriber.waitFor(events.length)
  for (const event of events) {
    const request = received.find((candidate) => candidate.headers['webhook-id'] === event.id)!
    t.ok(request, `${shown(event.name)} arrived`)
    t.same([request.headers['persona-event-name'], request.headers['persona-event-created-at']], event.headers, 'encoded headers')
    t.notOk('x-evil' in request.headers, 'no header smuggled in')
    t.ok(request.body.equals(Buffer.from(bodies.get(event.id)!, 'utf8')), 'body byte for byte')
    const delivery = await waitForDelivery(app, 'CRM', event.id, 'completed')
    t.equal(delivery.eventName, event.name, 'the admin API shows the name as Persona sent it')
    t.match(delivery.attempts, [{ attempt: 1, outcome: 'success', status: 200 }])
  }
  t.equal(received.length, events.length, 'each event once')
  t.match(await app.delivery.controls.get('CRM')!.state(), { paused: false, consecutiveFailures: 0 })
})
