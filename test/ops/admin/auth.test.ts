import t, { type Test } from 'tap'
import { adminAuthorized, bearerTokenMatches } from '../../../src/ops/admin/credentials.js'
import { ConfigError, loadConfig } from '../../../src/config/index.js'
import { Errors } from '../../../src/errors.js'
import { SECRET, startRelay } from '../../helpers/app.js'
import { ADMIN_TOKEN, basic } from '../../helpers/admin.js'
import { startSubscriber } from '../../helpers/subscriber.js'

const ROUTES = [
  { method: 'GET', url: '/admin/events/evt_unknown1' },
  { method: 'GET', url: '/admin/deliveries' },
  { method: 'POST', url: '/admin/deliveries/CRM.evt_unknown1/retry' },
  { method: 'POST', url: '/admin/deliveries/retry' },
  { method: 'GET', url: '/admin/subscribers' },
  { method: 'POST', url: '/admin/subscribers/CRM/pause' },
  { method: 'POST', url: '/admin/subscribers/CRM/resume' }
] as const

async function relayWithCrm(t: Test, overrides: Record<string, string> = {}) {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  return startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*', ...overrides })
}

t.test('without ADMIN_TOKEN every admin route is 404 NOT_FOUND, with or without a token', async (t) => {
  const { app } = await relayWithCrm(t)
  for (const route of ROUTES) {
    for (const headers of [{}, { authorization: `Bearer ${ADMIN_TOKEN}` }]) {
      const response = await app.inject({ ...route, headers })
      t.equal(response.statusCode, 404, `${route.method} ${route.url}`)
      t.equal(response.json().code, 'NOT_FOUND')
    }
  }
})

t.test('a missing, wrong or malformed bearer token is 401 ADMIN_UNAUTHORIZED on every route', async (t) => {
  const { app, logs } = await relayWithCrm(t, { ADMIN_TOKEN })
  const refused = [
    undefined,
    '',
    'Bearer',
    'Bearer ',
    `Bearer ${ADMIN_TOKEN}x`,
    `Bearer ${ADMIN_TOKEN.slice(0, -1)}`,
    `Bearer ${ADMIN_TOKEN.toUpperCase()}`,
    `Basic ${ADMIN_TOKEN}`,
    `Token ${ADMIN_TOKEN}`,
    ADMIN_TOKEN,
    `Bearer ${ADMIN_TOKEN} ${ADMIN_TOKEN}`,
    `Bearer${ADMIN_TOKEN}`
  ]
  for (const route of ROUTES) {
    for (const authorization of refused) {
      const response = await app.inject({ ...route, headers: authorization === undefined ? {} : { authorization } })
      t.equal(response.statusCode, 401, `${route.method} ${route.url} with ${JSON.stringify(authorization)}`)
      t.same(response.json(), {
        statusCode: 401,
        code: 'ADMIN_UNAUTHORIZED',
        error: 'Unauthorized',
        message: new Errors.ADMIN_UNAUTHORIZED().message
      })
    }
  }
  t.equal(await app.delivery.queues.get('CRM')!.isPaused(), false, 'a refused pause changed nothing')
  t.notOk(logs.text().includes(ADMIN_TOKEN.slice(0, 16)), 'no token, right or wrong, reaches the log')
})

t.test('the token is checked before the request: a bad id or an unknown subscriber is still 401', async (t) => {
  const { app } = await relayWithCrm(t, { ADMIN_TOKEN })
  for (const url of ['/admin/events/not-an-event-id', '/admin/deliveries?limit=0', '/admin/subscribers/NOPE/pause']) {
    const response = await app.inject({ method: url.includes('pause') ? 'POST' : 'GET', url, headers: { authorization: 'Bearer wrong' } })
    t.equal(response.statusCode, 401, url)
  }
})

t.test('the right token opens every route', async (t) => {
  const { app, logs } = await relayWithCrm(t, { ADMIN_TOKEN })
  const expected: Record<string, [number, string?]> = {
    'GET /admin/events/evt_unknown1': [404, 'EVENT_NOT_FOUND'],
    'GET /admin/deliveries': [200],
    'POST /admin/deliveries/CRM.evt_unknown1/retry': [404, 'DELIVERY_NOT_FOUND'],
    'POST /admin/deliveries/retry': [202],
    'GET /admin/subscribers': [200],
    'POST /admin/subscribers/CRM/pause': [200],
    'POST /admin/subscribers/CRM/resume': [200]
  }
  for (const authorization of [`Bearer ${ADMIN_TOKEN}`, `bearer ${ADMIN_TOKEN}`, `Bearer   ${ADMIN_TOKEN}  `]) {
    for (const route of ROUTES) {
      const response = await app.inject({ ...route, headers: { authorization } })
      const [status, code] = expected[`${route.method} ${route.url}`]!
      t.equal(response.statusCode, status, `${route.method} ${route.url} with ${JSON.stringify(authorization.slice(0, 9))}`)
      if (code) t.equal(response.json().code, code)
    }
  }
  t.same((await app.inject({ method: 'GET', url: '/admin/deliveries', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json(), { items: [] })
  t.notOk(logs.text().includes(ADMIN_TOKEN), 'the token never reaches the log')
  t.ok(logs.lines.some((line) => line.msg === 'request' && line.url === '/admin/subscribers' && line.statusCode === 200))
})

t.test('ADMIN_TOKEN shorter than 16 characters or holding a space is a config error that does not echo it', async (t) => {
  for (const token of ['short-token', '0123456789abcde', 'sixteen chars ok but spaced', ' '.repeat(20)]) {
    t.throws(() => loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET, ADMIN_TOKEN: token }), ConfigError, JSON.stringify(token))
    try {
      loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET, ADMIN_TOKEN: token })
    } catch (error) {
      const { problems } = error as ConfigError
      t.equal(problems.length, 1)
      t.match(problems[0], /^ADMIN_TOKEN: /)
      if (token.trim()) t.notOk(problems[0]!.includes(token), 'the token is not echoed')
    }
  }
  t.equal(loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET, ADMIN_TOKEN: '0123456789abcdef' }).adminToken, '0123456789abcdef')
  t.equal(loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET, ADMIN_TOKEN: '' }).adminToken, undefined, 'an empty value disables the API')
})

t.test('bearerTokenMatches accepts exactly `Bearer <token>`, scheme in any case', async (t) => {
  const token = 'the-configured-token-123'
  const cases: [string | undefined, boolean][] = [
    [`Bearer ${token}`, true],
    [`bearer ${token}`, true],
    [`BEARER ${token}`, true],
    [`Bearer \t${token}`, true],
    [`Bearer ${token}  `, true],
    [undefined, false],
    ['', false],
    ['Bearer', false],
    ['Bearer ', false],
    [token, false],
    [`Bearer${token}`, false],
    [` Bearer ${token}`, false],
    [`Basic ${token}`, false],
    [`Bearer ${token}x`, false],
    [`Bearer x${token}`, false],
    [`Bearer ${token.slice(1)}`, false],
    [`Bearer ${token.toUpperCase()}`, false],
    [`Bearer ${token} extra`, false],
    [`Bearer ${token},Bearer ${token}`, false]
  ]
  for (const [header, expected] of cases) t.equal(bearerTokenMatches(header, token), expected, JSON.stringify(header))
})

t.test('bearerTokenMatches never matches an empty presented token, even against an empty configured one', async (t) => {
  t.equal(bearerTokenMatches('Bearer ', ''), false)
  t.equal(bearerTokenMatches('Basic abc', ''), false)
  t.equal(bearerTokenMatches(undefined, ''), false)
})

t.test('adminAuthorized takes the Bearer token, or HTTP Basic with the token as the password and any user name', async (t) => {
  const token = ADMIN_TOKEN
  const cases: [string, string | undefined, boolean][] = [
    ['Basic with the token as password', basic('admin', token), true],
    ['Basic with any user name', basic('someone-else', token), true],
    ['Basic with an empty user name', basic('', token), true],
    ['Basic in lower case', basic('admin', token).replace('Basic', 'basic'), true],
    ['Bearer with the token', `Bearer ${token}`, true],
    ['no header', undefined, false],
    ['an empty header', '', false],
    ['Basic with a wrong password', basic('admin', 'wrong-password-0123456789'), false],
    ['Basic with the token as user name', basic(token, ''), false],
    ['Basic with the token and more', basic('admin', `${token}x`), false],
    ['Basic with part of the token', basic('admin', token.slice(0, -1)), false],
    ['Basic with the token in another case', basic('admin', token.toUpperCase()), false],
    ['Basic without credentials', 'Basic', false],
    ['Basic with bytes that are not base64', 'Basic !!!', false],
    ['Bearer with a wrong token', 'Bearer wrong-token-0123456789abc', false],
    ['the bare token', token, false],
    ['another scheme', `Token ${token}`, false]
  ]
  for (const [what, header, expected] of cases) t.equal(adminAuthorized(header, token), expected, what)

  const withColon = 'token:with:colons-0123456789'
  t.ok(adminAuthorized(basic('admin', withColon), withColon), 'the password is everything after the first colon')
})
