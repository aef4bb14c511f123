import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyPluginAsync } from 'fastify'
import { Errors } from '../../errors.js'

export const CONSOLE_PATH = '/admin/console'

/**
 * What `npm run build` made of ./page: tests run this file from src/, the image from dist/, and
 * both find the compiled page in dist/ (the browser cannot run TypeScript).
 */
const PAGE_DIR = new URL('../../../dist/ops/console/page/', import.meta.url)

/**
 * Everything the page loads is the relay's own: no inline script or style, nothing from another
 * origin, no framing, no plugin, and forms and links to a base only here.
 */
export const CONSOLE_CSP = "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml'
}

interface Asset {
  type: string
  body: Buffer
}

/** The page's files, read once; a relay whose build left them out does not start. */
function readPage(): Map<string, Asset> {
  const names = existsSync(PAGE_DIR) ? readdirSync(PAGE_DIR) : []
  if (!names.includes('index.html')) throw new Error(`The console's page is not built (no ${fileURLToPath(PAGE_DIR)}index.html): run npm run build`)
  return new Map(
    names
      .filter((name) => TYPES[extname(name)] !== undefined)
      .map((name) => [name, { type: TYPES[extname(name)]!, body: readFileSync(new URL(name, PAGE_DIR)) }])
  )
}

/**
 * The operator's console at /admin/console: a static page whose script calls the admin API, inside
 * whose plugin it is registered (same sign-in, same rule against requests from other sites).
 */
export const consoleRoutes: FastifyPluginAsync = async (app) => {
  const files = readPage()
  const page = files.get('index.html')!

  app.addHook('onSend', async (_request, reply) => {
    reply
      .header('content-security-policy', CONSOLE_CSP)
      .header('x-frame-options', 'DENY')
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store')
  })

  // Only without a slash: the browser keeps the sign-in for every path below /admin/, the API's too.
  app.get('', async (_request, reply) => reply.type(page.type).send(page.body))
  app.get<{ Params: { file: string } }>('/:file', async (request, reply) => {
    const file = files.get(request.params.file)
    if (!file) throw new Errors.NOT_FOUND()
    return reply.type(file.type).send(file.body)
  })
}
