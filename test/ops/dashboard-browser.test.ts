import { existsSync } from 'node:fs'
import t from 'tap'
import { ADMIN_TOKEN } from '../helpers/admin.js'
import { signedHeaders, startRelay } from '../helpers/app.js'
import { CHROMIUM, launchChromium } from '../helpers/browser.js'
import { deliveryView, waitForDelivery, waitForJob } from '../helpers/delivery.js'
import { FIXTURE, FIXTURE_ID } from '../helpers/fixtures.js'
import { startSubscriber } from '../helpers/subscriber.js'

const SCREENSHOT = '/tmp/dashboard.png'
const PERSONAL = ['alex@example.test', '1990-01-01', 'inq_Fh3kP9wQz2LmN8xRt5VbC1sY']

const skip = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (apt-get install chromium) to drive the dashboard with`

t.test('an operator finds a failed delivery in the dashboard, reads its attempts and retries it', { skip }, async (t) => {
  let succeed = false
  const subscriber = await startSubscriber(() => (succeed ? { status: 204 } : { status: 500, body: 'down for maintenance' }))
  t.teardown(() => subscriber.close())
  const relay = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: 'inquiry.*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '1'
  })
  await relay.app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(relay.app.server.address() as { port: number }).port}`

  const intake = await relay.app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(FIXTURE), payload: FIXTURE })
  t.equal(intake.statusCode, 200)
  await waitForJob(relay.app, 'CRM', FIXTURE_ID, 'failed')
  t.equal(subscriber.received.length, 1, 'one failed attempt, no retry left')

  const browser = await launchChromium()
  t.teardown(() => browser.close())
  const context = await browser.newContext({ httpCredentials: { username: 'admin', password: ADMIN_TOKEN } })
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const pageErrors: string[] = []
  page.on('pageerror', (error) => pageErrors.push(error.message))

  const home = await page.goto(`${base}/admin/queues/`)
  t.equal(home?.status(), 200, 'the browser got in with Basic credentials')
  await page.getByRole('link', { name: 'delivery-CRM' }).click()
  await page.getByRole('link', { name: /FAILED/ }).click()
  await page.waitForURL(/\/admin\/queues\/queue\/delivery-CRM\?status=failed$/)

  const main = page.locator('main')
  await main.getByText(FIXTURE_ID).waitFor()
  await main.getByText('inquiry.approved', { exact: true }).waitFor()
  t.pass('the failed delivery is listed with its event id and name')

  await page.getByRole('tab', { name: 'Logs' }).click()
  await main.getByText('"outcome":"http_error","status":500').waitFor()
  t.match(await main.innerText(), /\{"attempt":1,"at":"[^"]+","durationMs":[\d.]+,"outcome":"http_error","status":500,"response":"down for maintenance"\}/,
    'the Logs tab shows the attempt history')

  await page.getByRole('tab', { name: 'Data' }).click()
  await main.getByText(`eventId:"${FIXTURE_ID}"`).waitFor()
  const shown = await page.content()
  for (const value of PERSONAL) t.notMatch(shown, value, `${value} is not on the page`)

  succeed = true
  // The card's own retry button; the one above the list retries the whole tab.
  const retryButton = page.locator('[class*="jobActions"] button:has(svg.lucide-refresh-cw)')
  await retryButton.click()
  const confirm = page.getByRole('button', { name: 'Confirm' })
  // bull-board asks for confirmation of some actions, depending on its version and settings.
  if (await confirm.isVisible().catch(() => false)) await confirm.click()

  const [, retried] = await subscriber.waitFor(2, 15_000)
  t.equal(retried!.headers['webhook-id'], FIXTURE_ID, 'the retry from the UI reached the subscriber')
  t.ok(retried!.body.equals(Buffer.from(FIXTURE)), 'with the original body')
  await waitForDelivery(relay.app, 'CRM', FIXTURE_ID, 'completed')

  // Completed, the delivery is no job any more: it leaves the board, and the admin API lists it.
  await page.reload()
  await main.getByText('No failed jobs in this queue.').waitFor({ timeout: 15_000 })
  t.notMatch(await main.innerText(), FIXTURE_ID, 'the completed delivery left the failed list')
  await page.screenshot({ path: SCREENSHOT, fullPage: true })
  t.equal((await deliveryView(relay.app, 'CRM', FIXTURE_ID))?.state, 'completed')
  t.equal(subscriber.received.length, 2, 'and nothing was sent again')
  t.ok(existsSync(SCREENSHOT), `screenshot at ${SCREENSHOT}`)
  t.same(pageErrors, [], 'no script errors on the page')
})
