import t from 'tap'
import { signedHeaders, startRelay, uniqueEventId } from '../helpers/app.js'
import { waitForDelivery } from '../helpers/delivery.js'
import { startSubscriber } from '../helpers/subscriber.js'

/** A Persona event whose payload holds keys that JSON.parse would turn into prototype members. */
function eventWithPrototypeKeys(id: string): string {
  return `{"data":{"type":"event","id":"${id}","attributes":{"name":"inquiry.approved","created-at":"2026-03-02T14:05:11.482Z",` +
    `"payload":{"data":{"type":"inquiry","id":"inq_1","attributes":{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}}}}},` +
    `"__proto__":{"isAdmin":true}}`
}

t.test('a signed body with __proto__ and constructor.prototype keys is accepted and forwarded byte for byte', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.*' })
  const id = uniqueEventId()
  const body = eventWithPrototypeKeys(id)
  const response = await app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(body), payload: body })
  t.equal(response.statusCode, 200, response.body)
  t.same(response.json(), { received: true, id })
  const [request] = await subscriber.waitFor(1)
  t.ok(request!.body.equals(Buffer.from(body)), 'the subscriber gets the signed bytes unchanged')
  await waitForDelivery(app, 'CRM', id, 'completed')
  t.equal(({} as Record<string, unknown>).isAdmin, undefined, 'no prototype was touched')
  t.equal(({} as Record<string, unknown>).polluted, undefined)
})
