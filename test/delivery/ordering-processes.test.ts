import t from 'tap'
import { signedHeaders, uniqueEventId } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process.js'
import { startSubscriber, type ReceivedRequest } from '../helpers/subscriber.js'

const OBJECTS = ['inq_P1', 'inq_P2', 'inq_P3', 'inq_P4']
const PER_OBJECT = 5

t.test('ordering holds across two instances and a SIGKILL: no object runs two deliveries at once, each in created-at order, none stuck', async (t) => {
  const redis = await startRedis({ appendOnly: true })
  t.teardown(() => redis.stop())
  const inFlight = new Map<string, number>()
  const overlaps: string[] = []
  const objectOf = (request: ReceivedRequest) => JSON.parse(request.body.toString()).data.attributes.payload.data.id as string
  const subscriber = await startSubscriber((request) => {
    const object = objectOf(request)
    const count = (inFlight.get(object) ?? 0) + 1
    inFlight.set(object, count)
    if (count > 1) overlaps.push(object)
    setTimeout(() => inFlight.set(object, inFlight.get(object)! - 1), 250)
    return { status: 200, delayMs: 250 }
  })
  t.teardown(() => subscriber.close())
  const env = {
    SUBSCRIBER_KYC_URL: subscriber.url,
    SUBSCRIBER_KYC_EVENTS: 'inquiry.*',
    SUBSCRIBER_KYC_ORDERING: 'object',
    // Two instances' fan-outs take an object's events in an order of their own: the window lets an
    // earlier event that one of them queued a moment later still go first.
    SUBSCRIBER_KYC_ORDERING_WINDOW_MS: '300',
    SUBSCRIBER_KYC_CONCURRENCY: '4',
    // A killed worker's deliveries come back after two seconds rather than thirty.
    DELIVERY_LOCK_DURATION_MS: '2000'
  }
  const relays: RelayProcess[] = [await startRelayProcess(t, 'one', redis, env), await startRelayProcess(t, 'two', redis, env)]
  const sent = new Map<string, string[]>()
  for (let index = 0; index < PER_OBJECT; index++) {
    await Promise.all(OBJECTS.map(async (object, position) => {
      const id = uniqueEventId()
      ;(sent.get(object) ?? sent.set(object, []).get(object)!).push(id)
      const body = JSON.stringify({
        data: { type: 'event', id, attributes: { name: 'inquiry.approved', 'created-at': `2026-11-27T10:0${index}:00.000Z`, payload: { data: { type: 'inquiry', id: object } } } }
      })
      const response = await fetch(`${relays[(index + position) % 2]!.baseUrl}/webhooks/persona`, { method: 'POST', headers: signedHeaders(body), body })
      t.equal(response.status, 200)
    }))
  }
  // Kill one instance while both have deliveries in flight.
  await subscriber.waitFor(6, 15_000)
  relays[0]!.child.kill('SIGKILL')
  t.equal((await relays[0]!.exited).signal, 'SIGKILL')

  const everyId = [...sent.values()].flat()
  await subscriber.waitFor(everyId.length, 40_000)
  const deadline = Date.now() + 40_000
  while (Date.now() < deadline && !everyId.every((id) => subscriber.received.some((request) => JSON.parse(request.body.toString()).data.id === id))) {
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  const arrivals = subscriber.received.map((request) => ({ id: JSON.parse(request.body.toString()).data.id as string, object: objectOf(request) }))
  for (const [object, ids] of sent) {
    const sequence = arrivals.filter((arrival) => arrival.object === object).map((arrival) => arrival.id)
    // At least once: an attempt the killed instance had in flight may be made again, right after itself.
    const firsts = sequence.filter((id, index) => id !== sequence[index - 1])
    t.same(firsts, ids, `${object}: every event, in created-at order (${sequence.length} requests)`)
  }
  t.same(overlaps, [], 'no object ever had two deliveries in flight')
  t.comment(`attempts by the victim: ${relays[0]!.logs().filter((line) => line.msg === 'delivery attempt').length}, by the survivor: ${relays[1]!.logs().filter((line) => line.msg === 'delivery attempt').length}, requests: ${arrivals.length}`)
  t.notMatch(relays[1]!.stderr(), /error|\n\s+at /i, 'the survivor reported no error')
})
