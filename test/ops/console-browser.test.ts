import { existsSync } from 'node:fs'
import t, { type Test } from 'tap'
import type { Browser, Locator } from 'playwright-core'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { ADMIN_TOKEN } from '../helpers/admin.js'
import { backfillEnv } from '../helpers/backfill.js'
import { CHROMIUM, launchChromium, openConsole, type ConsolePage } from '../helpers/browser.js'
import { postEvent, waitForDelivery, waitForJob } from '../helpers/delivery.js'
import { FIXTURE, FIXTURE_ID } from '../helpers/fixtures.js'
import { API_KEY, apiEvent, startPersonaApi } from '../helpers/persona-api.js'
import { startSubscriber } from '../helpers/subscriber.js'

/** Values that only event bodies hold: the fixture's personal fields, and the Events API fake's. */
const PAYLOAD_VALUES = ['ALEX', 'EXAMPLE', '1990-01-01', 'alex@example.test', 'user_000123', 'act_9vLq2Wm4Xb7Nc1Rz5Tp8Hd3K', 'name-first', 'birthdate', 'Zoë']
const INQUIRY = 'inq_Fh3kP9wQz2LmN8xRt5VbC1sY'
const about = (objectId: string) => ({ payload: { data: { type: 'inquiry', id: objectId } } })

const skip = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (apt-get install chromium) to drive the console with`

let browser: Browser
t.before(async () => {
  if (!skip) browser = await launchChromium()
})
t.teardown(() => browser?.close())

/** What every page of the console must keep to: no payload value anywhere in its HTML, no error. */
function checkPages(t: Test, console: ConsolePage) {
  t.ok(console.seen.length > 0, `${console.seen.length} states of the page looked at`)
  for (const value of PAYLOAD_VALUES) t.notOk(console.seen.some((html) => html.includes(value)), `${value} is never on the page`)
  t.same(console.errors, [], 'no console error, script error or CSP violation')
}

/** The value a definition list shows for a label, e.g. Waiting → 2. */
const fact = (within: Locator, label: string) => within.locator(`dt:text-is("${label}") + dd`)

t.test('an operator finds an inquiry\'s events, sees KYC fail three times with HTTP 500, retries it and sees it delivered', { skip }, async (t) => {
  let succeed = false
  const kyc = await startSubscriber(() => (succeed ? { status: 204 } : { status: 500, body: 'kyc is down for maintenance' }))
  const crm = await startSubscriber()
  t.teardown(() => Promise.all([kyc.close(), crm.close()]))
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_KYC_URL: kyc.url,
    SUBSCRIBER_KYC_EVENTS: 'inquiry.approved',
    SUBSCRIBER_KYC_MAX_ATTEMPTS: '3',
    SUBSCRIBER_KYC_RETRY_SCHEDULE: '0.05',
    SUBSCRIBER_CRM_URL: crm.url,
    SUBSCRIBER_CRM_EVENTS: 'inquiry.*'
  })
  const completed = uniqueEventId()
  await postEvent(app, personaEvent(completed, 'inquiry.completed', about(INQUIRY)))
  await postEvent(app, FIXTURE)
  await waitForJob(app, 'KYC', FIXTURE_ID, 'failed')
  await Promise.all([FIXTURE_ID, completed].map((id) => waitForDelivery(app, 'CRM', id, 'completed')))
  t.equal(kyc.received.length, 3, 'premise: three attempts, all answered 500')

  const console = await openConsole(t, browser, app)
  const { page } = console
  await page.getByLabel('Search').fill(INQUIRY)
  await page.getByRole('button', { name: 'Search' }).click()
  const results = page.locator('.results > li')
  await page.getByText(`2 events about ${INQUIRY}`).waitFor()
  t.same(await results.locator('h3').allInnerTexts(), ['inquiry.approved', 'inquiry.completed'], 'both events of the inquiry, newest received first')
  const approved = results.filter({ hasText: 'inquiry.approved' })
  t.same(await approved.locator('.badge').allInnerTexts(), ['CRM: delivered', 'KYC: failed'], 'a state badge per routed subscriber')
  t.match(await approved.innerText(), /Created\s+2026-03-02 14:05:11 UTC/, 'Persona\'s created-at')
  t.match(await approved.innerText(), /Received\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/)
  t.match(await approved.innerText(), /Source\s+webhook/)
  await console.look('search')

  await page.getByRole('link', { name: 'inquiry.approved', exact: true }).click()
  const delivery = page.getByRole('region', { name: 'KYC' })
  await delivery.locator('.timeline li').nth(2).waitFor()
  t.equal(await delivery.locator('.delivery-state .badge').innerText(), 'failed')
  t.match(await delivery.locator('.why').innerText(), 'Exhausted: all 3 attempts failed.', 'and why')
  const attempts = await delivery.locator('.timeline li').allInnerTexts()
  t.equal(attempts.length, 3)
  attempts.forEach((attempt, index) => {
    t.match(attempt, new RegExp(`^Attempt ${index + 1}\\s+\\d{4}-\\d\\d-\\d\\d [\\d:]+ UTC\\s+\\d+ ms\\s+HTTP 500\\s+kyc is down for maintenance$`), `attempt ${index + 1}: time, duration, status, answer`)
  })
  t.equal(await page.getByRole('region', { name: 'CRM' }).locator('.badge').innerText(), 'delivered')
  await console.look('event-failed')

  succeed = true
  await delivery.getByRole('button', { name: 'Retry', exact: true }).click()
  t.match(await delivery.getByRole('group', { name: 'Confirm retry' }).innerText(), 'Send KYC this event again? It gets a fresh budget of 3 attempts.')
  t.equal(kyc.received.length, 3, 'nothing is sent before the operator confirms')
  await delivery.getByRole('button', { name: 'Confirm retry' }).click()
  await delivery.locator('.delivery-state .badge', { hasText: 'delivered' }).waitFor()
  t.match(await delivery.getByRole('status').innerText(), 'Queued again for KYC.')
  t.match(await delivery.locator('.timeline li').last().innerText(), /HTTP 204/, 'the delivering attempt joins the timeline')
  t.equal(await delivery.getByRole('button', { name: 'Retry', exact: true }).count(), 0, 'a delivered delivery offers no retry')
  t.equal(kyc.received.length, 4)
  t.equal(kyc.received[3]!.headers['webhook-id'], FIXTURE_ID)
  await console.look('event-delivered')

  await page.getByRole('link', { name: 'Subscribers' }).click()
  const kycCard = page.getByRole('region', { name: 'KYC' })
  const chart = kycCard.getByRole('img', { name: 'KYC: 1 delivered and 3 failed attempts in the last 60 minutes' })
  await chart.waitFor()
  const minutes = await chart.locator('g.minute > title').allTextContents()
  const sum = (kind: string) => minutes.reduce((total, title) => total + Number(new RegExp(`(\\d+) ${kind}`).exec(title)![1]), 0)
  t.ok(minutes.length >= 1 && minutes.every((title) => /^\d\d:\d\d UTC: \d+ delivered, \d+ failed$/.test(title)), `a bar per minute with attempts: ${minutes.join('; ')}`)
  t.same([sum('delivered'), sum('failed')], [1, 3], 'the bars add up to this minute\'s attempts')
  t.ok(await chart.locator('rect.bar-failed').count() >= 1)
  await page.getByRole('region', { name: 'CRM' }).getByRole('img', { name: 'CRM: 2 delivered and 0 failed attempts in the last 60 minutes' }).waitFor()
  t.match(await kycCard.innerText(), /Patterns\s+inquiry\.approved/)
  await console.look('subscribers')
  checkPages(t, console)
})

t.test('an operator pauses a subscriber, sees its events wait, and resumes it', { skip }, async (t) => {
  const kyc = await startSubscriber()
  t.teardown(() => kyc.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_KYC_URL: kyc.url, SUBSCRIBER_KYC_EVENTS: 'inquiry.*' })
  const console = await openConsole(t, browser, app)
  const { page } = console
  await page.getByRole('link', { name: 'Subscribers' }).click()
  const card = page.getByRole('region', { name: 'KYC' })
  await fact(card, 'Waiting').waitFor()
  t.equal(await card.locator('header .badge').innerText(), 'active')

  await card.getByRole('button', { name: 'Pause', exact: true }).click()
  t.match(await card.getByRole('group', { name: 'Confirm pause' }).innerText(), 'Pause KYC? Its deliveries wait until it is resumed.')
  await card.getByRole('button', { name: 'Confirm pause' }).click()
  await card.getByRole('button', { name: 'Resume', exact: true }).waitFor()
  t.equal(await card.locator('header .badge').innerText(), 'paused by operator')
  t.equal(await app.delivery.queues.get('KYC')!.isPaused(), true)

  const waiting = [uniqueEventId(), uniqueEventId()]
  for (const id of waiting) await postEvent(app, personaEvent(id, 'inquiry.approved', about('inq_PAUSED1')))
  await Promise.all(waiting.map((id) => waitForJob(app, 'KYC', id, 'waiting')))
  await card.locator('dt:text-is("Waiting") + dd', { hasText: /^2$/ }).waitFor()
  t.match(await fact(card, 'Oldest waiting').innerText(), /^\d+ s$/, 'and how long the oldest has waited')
  t.match(await fact(card, 'Paused since').innerText(), /^\d{4}-/)
  await console.look('subscribers-paused')

  await page.getByRole('link', { name: 'Events' }).click()
  await page.getByRole('button', { name: 'Search' }).click()
  await page.locator('.results > li').nth(1).waitFor()
  t.same(await page.locator('.results .badge').allInnerTexts(), ['KYC: paused', 'KYC: paused'], 'the search shows the events waiting')
  console.seen.push(await page.content())

  await page.getByRole('link', { name: 'Subscribers' }).click()
  await card.getByRole('button', { name: 'Resume', exact: true }).click()
  await card.getByRole('button', { name: 'Confirm resume' }).click()
  await card.getByRole('button', { name: 'Pause', exact: true }).waitFor()
  t.equal(await card.locator('header .badge').innerText(), 'active')
  await kyc.waitFor(2)
  await Promise.all(waiting.map((id) => waitForDelivery(app, 'KYC', id, 'completed')))
  await card.locator('dt:text-is("Waiting") + dd', { hasText: /^0$/ }).waitFor()
  t.equal(await fact(card, 'Oldest waiting').innerText(), 'none waits')
  console.seen.push(await page.content())
  checkPages(t, console)
})

t.test('an operator retries every failed delivery of a subscriber within a time range', { skip }, async (t) => {
  let succeed = false
  const kyc = await startSubscriber(() => ({ status: succeed ? 200 : 503 }))
  t.teardown(() => kyc.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_KYC_URL: kyc.url, SUBSCRIBER_KYC_EVENTS: 'inquiry.*', SUBSCRIBER_KYC_MAX_ATTEMPTS: '1' })
  const failed = [uniqueEventId(), uniqueEventId()]
  for (const id of failed) await postEvent(app, personaEvent(id, 'inquiry.approved', about('inq_BULK1')))
  await Promise.all(failed.map((id) => waitForJob(app, 'KYC', id, 'failed')))
  succeed = true

  const console = await openConsole(t, browser, app)
  const { page } = console
  await page.getByRole('link', { name: 'Subscribers' }).click()
  const card = page.getByRole('region', { name: 'KYC' })
  await card.locator('dt:text-is("Failed") + dd', { hasText: /^2$/ }).waitFor()
  const range = card.getByRole('group', { name: 'Retry failed deliveries of KYC' })
  const hourAgo = new Date(Date.now() - 3600_000).toISOString().slice(0, 19)
  await range.getByLabel('Failed from (UTC)').fill(hourAgo)
  await range.getByRole('button', { name: 'Retry failed', exact: true }).click()
  t.match(await range.getByRole('group', { name: 'Confirm retry failed' }).innerText(), `Send KYC again every delivery that failed from ${hourAgo}`)
  await range.getByRole('button', { name: 'Confirm retry failed' }).click()
  await range.getByRole('status').getByText('2 failed deliveries queued again.').waitFor()
  await Promise.all(failed.map((id) => waitForDelivery(app, 'KYC', id, 'completed')))
  await card.locator('dt:text-is("Failed") + dd', { hasText: /^0$/ }).waitFor()
  console.seen.push(await page.content())
  checkPages(t, console)
})

t.test('an operator backfills after a dry run that shows what would be queued', { skip }, async (t) => {
  const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000)
  const missed = [uniqueEventId(), uniqueEventId()]
  const received = uniqueEventId()
  const api = await startPersonaApi({ items: [apiEvent(missed[0]!, minutesAgo(5)), apiEvent(received, minutesAgo(10)), apiEvent(missed[1]!, minutesAgo(20), 'account.created')] })
  const kyc = await startSubscriber()
  t.teardown(() => Promise.all([api.close(), kyc.close()]))
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_KYC_URL: kyc.url, SUBSCRIBER_KYC_EVENTS: 'inquiry.*', ...backfillEnv(api.baseUrl, API_KEY) })
  await postEvent(app, personaEvent(received))

  const console = await openConsole(t, browser, app)
  const { page } = console
  await page.getByRole('link', { name: 'Backfill' }).click()
  await page.getByLabel('Since').fill('1h')
  await page.getByRole('button', { name: 'Dry run' }).click()
  const result = page.getByRole('region', { name: 'Backfill result' })
  const table = result.getByRole('table', { name: 'Events the backfill would queue' })
  await table.waitFor()
  t.equal(await fact(result, 'Would be queued').innerText(), '2')
  t.equal(await fact(result, 'Already recorded').innerText(), '1')
  const rows = (await table.locator('tbody tr').allInnerTexts()).map((row) => row.split('\t'))
  t.match(rows, [[missed[0], 'inquiry.approved', / UTC$/, 'KYC'], [missed[1], 'account.created', / UTC$/, 'none']], 'the events a real run would queue, and to whom')
  await console.look('backfill-dry-run')
  t.equal(kyc.received.length, 1, 'the dry run queued nothing')

  await result.getByRole('button', { name: 'Start backfill', exact: true }).click()
  await result.getByRole('button', { name: 'Confirm start backfill' }).click()
  await result.getByText('Backfill finished').waitFor()
  await result.getByRole('status').getByText('2 events queued.').waitFor()
  t.equal(await fact(result, 'Queued').innerText(), '2')
  await kyc.waitFor(2)
  t.equal(kyc.received[1]!.headers['webhook-id'], missed[0])
  console.seen.push(await page.content())
  checkPages(t, console)
})
