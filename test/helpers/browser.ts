import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { chromium, type Browser, type Page } from 'playwright-core'
import type { App } from '../../src/app.js'
import { CONSOLE_PATH } from '../../src/ops/console/routes.js'
import { ADMIN_TOKEN } from './admin.js'
import { ROOT } from './relay-process.js'

export const CHROMIUM = '/usr/bin/chromium'
/** Kept by CI as artifacts; README's pictures in docs/console/ are copies of some. */
export const SCREENSHOTS = join(ROOT, 'artifacts/console')

export const DESKTOP = { width: 1280, height: 800 }
export const PHONE = { width: 390, height: 844 }

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync']
  })
}

export interface ConsolePage {
  page: Page
  /** Console messages of type error, script errors and CSP violations, as the page met them. */
  errors: string[]
  /** The page's HTML at every step the test looked at, to search for what must never be shown. */
  seen: string[]
  /** Records the HTML as it is now, and takes a screenshot at desktop and at phone width. */
  look(name: string): Promise<void>
}

/** A page of the console in a fresh browser context signed in with the admin token, at desktop size. */
export async function openConsole(t: Test, browser: Browser, app: App): Promise<ConsolePage> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const context = await browser.newContext({ httpCredentials: { username: 'operator', password: ADMIN_TOKEN }, viewport: DESKTOP })
  t.teardown(() => context.close())
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const errors: string[] = []
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text())
  })
  page.on('pageerror', (error) => errors.push(error.message))
  const seen: string[] = []
  mkdirSync(SCREENSHOTS, { recursive: true })
  const response = await page.goto(`http://127.0.0.1:${port}${CONSOLE_PATH}`)
  if (response?.status() !== 200) throw new Error(`the console answered ${response?.status()}`)
  return {
    page,
    errors,
    seen,
    async look(name) {
      seen.push(await page.content())
      await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true })
      await page.setViewportSize(PHONE)
      await page.screenshot({ path: join(SCREENSHOTS, `${name}-phone.png`), fullPage: true })
      seen.push(await page.content())
      await page.setViewportSize(DESKTOP)
    }
  }
}
