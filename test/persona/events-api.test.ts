import { once } from 'node:events'
import { createServer } from 'node:http'
import t, { type Test } from 'tap'
import type { PersonaApiConfig } from '../../src/config/index.js'
import { MAX_PAGE_BYTES, nextPageUrl, PersonaEventsApi, type EventsApiOptions } from '../../src/persona/events-api.js'
import { API_KEY, apiEvent, startPersonaApi, type FakePersonaApiOptions } from '../helpers/persona-api.js'

const FAST: EventsApiOptions = { backoffMs: 5, attempts: 3 }

function items(count: number): Record<string, unknown>[] {
  return Array.from({ length: count }, (_, index) => apiEvent(`evt_list${index}`, new Date(Date.UTC(2026, 10, 27, 10, 0, 60 - index))))
}

async function setup(t: Test, options: FakePersonaApiOptions, config: Partial<PersonaApiConfig> = {}, apiOptions: EventsApiOptions = FAST) {
  const server = await startPersonaApi(options)
  t.teardown(() => server.close())
  const api = new PersonaEventsApi({ key: API_KEY, baseUrl: server.baseUrl, version: undefined, keyInflection: undefined, ...config }, apiOptions)
  return { server, api }
}

/** Every page's item ids, or the error the walk ended with. */
async function walk(api: PersonaEventsApi, signal = new AbortController().signal) {
  const pages: string[][] = []
  try {
    for await (const page of api.pages(signal)) pages.push(page.items.map((item) => (item as { id: string }).id))
    return { pages }
  } catch (error) {
    return { pages, error: error as Error & { code?: string; statusCode?: number } }
  }
}

t.test('follows links.next page by page, newest first, with the key, version and inflection headers', async (t) => {
  const { server, api } = await setup(t, { items: items(5) }, { version: '2023-01-05', keyInflection: 'kebab' }, { ...FAST, pageSize: 2 })
  const { pages, error } = await walk(api)
  t.error(error)
  t.same(pages, [['evt_list0', 'evt_list1'], ['evt_list2', 'evt_list3'], ['evt_list4'], []])
  t.same(server.requests.map((request) => request.url.search), [
    '?page%5Bsize%5D=2',
    '?page%5Bafter%5D=evt_list1&page%5Bsize%5D=2',
    '?page%5Bafter%5D=evt_list3&page%5Bsize%5D=2',
    '?page%5Bafter%5D=evt_list4&page%5Bsize%5D=2'
  ])
  for (const { headers } of server.requests) {
    t.match(headers, { authorization: `Bearer ${API_KEY}`, 'persona-version': '2023-01-05', 'key-inflection': 'kebab', 'user-agent': /^persona-relay\// })
  }
})

t.test('without links it pages with page[after] the last id, and a short page is the last', async (t) => {
  const { server, api } = await setup(t, { items: items(5), links: false }, {}, { ...FAST, pageSize: 2 })
  const { pages, error } = await walk(api)
  t.error(error)
  t.same(pages, [['evt_list0', 'evt_list1'], ['evt_list2', 'evt_list3'], ['evt_list4']])
  t.equal(server.requests[1]!.url.searchParams.get('page[after]'), 'evt_list1')
  t.notOk('persona-version' in server.requests[0]!.headers, 'no Persona-Version unless configured')
  t.notOk('key-inflection' in server.requests[0]!.headers, 'no Key-Inflection unless configured')
})

t.test('asks for pages of 100 by default, the most Persona serves', async (t) => {
  const { server, api } = await setup(t, { items: items(1) })
  await walk(api)
  t.equal(server.requests[0]!.url.searchParams.get('page[size]'), '100')
})

t.test('a 429 is retried after its Retry-After, not sooner', async (t) => {
  const { server, api } = await setup(t, {
    items: items(2),
    answer: (n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' }, body: '{"errors":[{"title":"Rate limited"}]}' } : undefined)
  })
  const { pages, error } = await walk(api)
  t.error(error)
  t.same(pages[0], ['evt_list0', 'evt_list1'])
  const waited = server.requests[1]!.at - server.requests[0]!.at
  t.ok(waited >= 950, `waited ${waited} ms after Retry-After: 1 (backoff alone would be 5 ms)`)
})

t.test('a 500 then a success: the page is fetched again with backoff', async (t) => {
  const { server, api } = await setup(t, { items: items(2), answer: (n) => (n === 1 ? { status: 500, body: 'oops' } : undefined) })
  const { pages, error } = await walk(api)
  t.error(error)
  t.same(pages[0], ['evt_list0', 'evt_list1'])
  t.equal(server.requests[0]!.url.search, server.requests[1]!.url.search, 'the same page again')
})

t.test('5xx on every try ends the walk with PERSONA_API_UNAVAILABLE after the configured attempts', async (t) => {
  const { server, api } = await setup(t, { answer: () => ({ status: 503 }) })
  const { error } = await walk(api)
  t.match(error, { code: 'PERSONA_API_UNAVAILABLE', statusCode: 502, message: /after 3 attempts \(HTTP 503\)/ })
  t.equal(server.requests.length, 3)
})

t.test('an invalid key (401) or a key without the permission (403) ends at once with a clear error', async (t) => {
  for (const status of [401, 403]) {
    const { server, api } = await setup(t, { answer: () => ({ status }) }, { key: 'persona_wrong_key_123' })
    const { error } = await walk(api)
    t.match(error, { code: 'PERSONA_API_UNAUTHORIZED', message: new RegExp(`PERSONA_API_KEY \\(HTTP ${status}\\)`) }, `${status}`)
    t.notMatch(error!.message, /persona_wrong_key_123/, 'the key is never in the message')
    t.equal(server.requests.length, 1, 'not retried')
  }
  const { error } = await walk((await setup(t, { items: items(1) }, { key: 'persona_wrong_key_123' })).api)
  t.match(error, { code: 'PERSONA_API_UNAUTHORIZED' }, 'the fake API refuses a key it does not know')
})

t.test('another 4xx is PERSONA_API_REJECTED, not retried', async (t) => {
  const { server, api } = await setup(t, { answer: () => ({ status: 400 }) })
  t.match((await walk(api)).error, { code: 'PERSONA_API_REJECTED', message: /HTTP 400/ })
  t.equal(server.requests.length, 1)
})

t.test('answers that are not an event list end the walk with PERSONA_API_BAD_RESPONSE', async (t) => {
  const cases: [string, string][] = [['not json', 'the body is not JSON'], ['{"errors":[]}', 'no data array'], ['null', 'no data array']]
  for (const [body, reason] of cases) {
    const { api } = await setup(t, { answer: () => ({ status: 200, body }) })
    t.match((await walk(api)).error, { code: 'PERSONA_API_BAD_RESPONSE', message: new RegExp(reason) }, body)
  }
})

t.test('a links.next to another host is refused: the key is never sent there', async (t) => {
  const elsewhere = await startPersonaApi({ items: items(1) })
  t.teardown(() => elsewhere.close())
  const { api } = await setup(t, {
    answer: () => ({ status: 200, body: JSON.stringify({ data: items(1), links: { next: `${elsewhere.baseUrl}/api/v1/events?page%5Bafter%5D=evt_list0` } }) })
  })
  const { pages, error } = await walk(api)
  t.same(pages, [['evt_list0']])
  t.match(error, { code: 'PERSONA_API_BAD_RESPONSE', message: /another host/ })
  t.equal(elsewhere.requests.length, 0)
})

t.test('a refused connection is retried, then reported with its error code', async (t) => {
  const { server, api } = await setup(t, {})
  await server.close()
  t.match((await walk(api)).error, { code: 'PERSONA_API_UNAVAILABLE', message: /after 3 attempts \(ECONNREFUSED\)/ })
})

t.test('aborting stops a walk that waits out a Retry-After', async (t) => {
  const { api } = await setup(t, { answer: () => ({ status: 429, headers: { 'retry-after': '60' } }) })
  const controller = new AbortController()
  const started = Date.now()
  setTimeout(() => controller.abort(), 100)
  const { error } = await walk(api, controller.signal)
  t.equal(error?.name, 'AbortError')
  t.ok(Date.now() - started < 5000)
})

t.test('nextPageUrl refuses a next link that names the same page, which would loop for ever', async (t) => {
  const origin = 'https://api.withpersona.com'
  const current = new URL('/api/v1/events?page%5Bafter%5D=evt_a', origin)
  const page = [{ id: 'evt_b' }]
  t.throws(() => nextPageUrl(current, { links: { next: '/api/v1/events?page%5Bafter%5D=evt_a' } }, page, 1, origin), { code: 'PERSONA_API_BAD_RESPONSE' })
  t.equal(nextPageUrl(current, { links: { next: null } }, [{}], 1, origin), undefined, 'a full page whose last item has no id ends the walk')
  t.equal(nextPageUrl(current, { links: { next: '' } }, page, 2, origin), undefined, 'an empty link on a short page ends it')
  t.equal(nextPageUrl(current, { links: { next: '/api/v1/events?page%5Bafter%5D=evt_b' } }, [], 1, origin), undefined, 'an empty page ends it')
})

/** An endpoint that streams `totalBytes` of a JSON page, counting what it managed to send. */
async function streamingApi(t: Test, totalBytes: number) {
  const chunk = Buffer.alloc(64 * 1024, 0x20)
  const sent = { bytes: 0, requests: 0 }
  const server = createServer((_req, res) => {
    sent.requests += 1
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"data":[],"padding":"')
    sent.bytes += 22
    const pump = () => {
      while (sent.bytes + chunk.length + 2 < totalBytes) {
        sent.bytes += chunk.length
        if (!res.write(chunk)) return res.once('drain', pump)
      }
      res.end('"}')
    }
    res.on('close', () => res.removeAllListeners('drain'))
    pump()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const { port } = server.address() as { port: number }
  const api = new PersonaEventsApi({ key: API_KEY, baseUrl: `http://127.0.0.1:${port}`, version: undefined, keyInflection: undefined }, FAST)
  return { api, sent }
}

t.test(`a page over ${MAX_PAGE_BYTES / 1024 / 1024} MiB ends the walk with PERSONA_API_BAD_RESPONSE, unread and not retried`, async (t) => {
  const { api, sent } = await streamingApi(t, 200 * 1024 * 1024)
  const { pages, error } = await walk(api)
  t.same(pages, [])
  t.equal(error?.code, 'PERSONA_API_BAD_RESPONSE')
  t.match(error?.message, /larger than 16 MiB/)
  t.equal(sent.requests, 1, 'asked once: a page that size will not shrink on a retry')
  t.ok(sent.bytes < 64 * 1024 * 1024, `the endpoint sent ${(sent.bytes / 1024 / 1024).toFixed(0)} MiB of 200 before the relay hung up`)
})

t.test('a page just under the cap is read', async (t) => {
  const { api } = await streamingApi(t, MAX_PAGE_BYTES - 1024)
  const { pages, error } = await walk(api)
  t.error(error)
  t.same(pages, [[]])
})
