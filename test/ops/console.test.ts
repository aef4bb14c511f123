import t from 'tap'
import { Errors } from '../../src/errors.js'
import { CONSOLE_CSP, CONSOLE_PATH } from '../../src/ops/console/routes.js'
import { ADMIN_TOKEN, basic } from '../helpers/admin.js'
import { startRelay } from '../helpers/app.js'
import { startSubscriber } from '../helpers/subscriber.js'

const BASIC = basic('operator', ADMIN_TOKEN)

t.test('without ADMIN_TOKEN there is no console', async (t) => {
  const { app } = await startRelay(t)
  for (const url of [CONSOLE_PATH, `${CONSOLE_PATH}/main.js`]) {
    const response = await app.inject({ url, headers: { authorization: BASIC } })
    t.equal(response.statusCode, 404, url)
    t.match(response.json(), { code: 'NOT_FOUND' })
  }
})

t.test('the console', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const get = (url: string, authorization?: string) => app.inject({ url, headers: authorization ? { authorization } : {} })
  const page = await get(CONSOLE_PATH, BASIC)

  t.test('asks a browser to sign in, and takes the admin token as the password of HTTP Basic', async (t) => {
    for (const authorization of [undefined, basic('operator', 'not-the-admin-token'), 'Bearer not-the-admin-token']) {
      const refused = await get(CONSOLE_PATH, authorization)
      t.equal(refused.statusCode, 401, String(authorization))
      t.equal(refused.headers['www-authenticate'], 'Basic realm="persona-relay", charset="UTF-8"')
      t.match(refused.json(), { code: 'ADMIN_UNAUTHORIZED' })
      t.notMatch(refused.body, /<html/, 'nothing of the page before signing in')
    }
    t.equal(page.statusCode, 200)
    t.match(page.headers['content-type'], /^text\/html/)
    t.equal((await get(CONSOLE_PATH, `Bearer ${ADMIN_TOKEN}`)).statusCode, 200, 'a script may use the Bearer token')
    t.equal((await get(`${CONSOLE_PATH}/`, BASIC)).statusCode, 404, 'only without the slash, below which the browser keeps the sign-in for /admin/')
  })

  t.test('serves its script and stylesheet, and nothing else of the build', async (t) => {
    const assets = [...page.body.matchAll(/(?:src|href)="([^"#]+)"/g)].map((match) => match[1]!)
    t.same(assets.sort(), ['/admin/console/console.css', '/admin/console/icon.svg', '/admin/console/main.js', '/admin/queues/'], 'every asset is the relay\'s own')
    const types: Record<string, RegExp> = { 'main.js': /^text\/javascript/, 'event-view.js': /^text\/javascript/, 'console.css': /^text\/css/, 'icon.svg': /^image\/svg\+xml/ }
    for (const [file, type] of Object.entries(types)) {
      const asset = await get(`${CONSOLE_PATH}/${file}`, BASIC)
      t.equal(asset.statusCode, 200, file)
      t.match(asset.headers['content-type'], type, file)
      t.equal(asset.headers['x-content-type-options'], 'nosniff', file)
    }
    t.equal((await get(`${CONSOLE_PATH}/main.js`)).statusCode, 401, 'the script too needs the sign-in')
    for (const file of ['main.ts', 'main.js.map', 'no-such-file.js', '..%2Froutes.ts']) {
      const missing = await get(`${CONSOLE_PATH}/${file}`, BASIC)
      t.equal(missing.statusCode, 404, file)
      t.match(missing.json(), { code: 'NOT_FOUND' })
    }
  })

  t.test('forbids framing, inline script and style, and anything from elsewhere, on every answer', async (t) => {
    t.equal(CONSOLE_CSP, "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
    const answers = {
      'the page': page,
      'the script': await get(`${CONSOLE_PATH}/main.js`, BASIC),
      'a 401': await get(CONSOLE_PATH),
      'a missing file': await get(`${CONSOLE_PATH}/missing.js`, BASIC)
    }
    for (const [what, response] of Object.entries(answers)) {
      t.equal(response.headers['content-security-policy'], CONSOLE_CSP, `${what} (${response.statusCode})`)
      t.equal(response.headers['x-frame-options'], 'DENY', `${what} (${response.statusCode})`)
      t.equal(response.headers['cache-control'], 'no-store', `${what} (${response.statusCode})`)
    }
    t.notMatch(page.body, /<script(?![^>]*\bsrc=)/, 'no inline script')
    t.notMatch(page.body, /<style|\sstyle=/, 'no inline style')
    t.notMatch(page.body, /\son[a-z]+=/, 'no inline event handler')
  })
})

t.test('the admin API takes HTTP Basic as well as the Bearer token', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  for (const authorization of [BASIC, basic('', ADMIN_TOKEN), `Bearer ${ADMIN_TOKEN}`]) {
    const response = await app.inject({ url: '/admin/subscribers', headers: { authorization } })
    t.equal(response.statusCode, 200, authorization.slice(0, 12))
  }
  const refused = await app.inject({ url: '/admin/subscribers', headers: { authorization: basic('operator', 'wrong-token-0123456789') } })
  t.equal(refused.statusCode, 401)
  t.equal(refused.headers['www-authenticate'], 'Basic realm="persona-relay", charset="UTF-8"', 'so that a browser asks for the token')
  t.same(refused.json(), { statusCode: 401, code: 'ADMIN_UNAUTHORIZED', error: 'Unauthorized', message: new Errors.ADMIN_UNAUTHORIZED().message })
})

t.test('a change signed in with HTTP Basic must be JSON, which no page of another site can send; the Bearer token is free of the rule', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const queue = app.delivery.queues.get('CRM')!
  const changes = ['/admin/subscribers/CRM/pause', '/admin/deliveries/retry', '/admin/deliveries/CRM.evt_unknown1/retry', '/admin/backfill']
  // What a form on another site can post: urlencoded, multipart or text/plain, or nothing at all.
  const forgeable = [
    {},
    { 'content-type': 'application/x-www-form-urlencoded' },
    { 'content-type': 'multipart/form-data; boundary=x' },
    { 'content-type': 'text/plain' },
    { 'content-type': 'text/plain; charset=utf-8', origin: 'https://elsewhere.example', 'sec-fetch-site': 'cross-site' }
  ]
  for (const url of changes) {
    for (const headers of forgeable) {
      const response = await app.inject({ method: 'POST', url, headers: { authorization: BASIC, ...headers }, payload: 'since=1h' })
      t.equal(response.statusCode, 403, `${url} ${headers['content-type'] ?? 'without a body type'}`)
      t.same(response.json(), { statusCode: 403, code: 'ADMIN_JSON_REQUIRED', error: 'Forbidden', message: new Errors.ADMIN_JSON_REQUIRED().message })
    }
  }
  t.equal(await queue.isPaused(), false, 'no refused pause took effect')

  for (const type of ['application/json', 'Application/JSON; charset=utf-8']) {
    const paused = await app.inject({ method: 'POST', url: '/admin/subscribers/CRM/pause', headers: { authorization: BASIC, 'content-type': type }, payload: '{}' })
    t.equal(paused.statusCode, 200, `Basic with ${type}, as the console sends it`)
  }
  const resumed = await app.inject({ method: 'POST', url: '/admin/subscribers/CRM/resume', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.equal(resumed.statusCode, 200, 'a script with the Bearer token needs no body, as before')
  t.equal(await queue.isPaused(), false)
  const read = await app.inject({ url: '/admin/deliveries', headers: { authorization: BASIC, 'content-type': 'text/plain' } })
  t.equal(read.statusCode, 200, 'a read is no change')
})
