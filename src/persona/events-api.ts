import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import type { PersonaApiConfig } from '../config/index.js'
import { parseRetryAfter } from '../retry-after.js'
import { Errors } from '../errors.js'
import { USER_AGENT } from '../version.js'

/** The largest page Persona serves. */
export const MAX_PAGE_SIZE = 100
/**
 * The most bytes read of one page: 100 events of 1 MB each is far more than Persona sends, and a
 * broken or hostile endpoint must not make the relay buffer whatever it streams.
 */
export const MAX_PAGE_BYTES = 16 * 1024 * 1024

export interface EventsApiOptions {
  /** Tries per page before a 429, 5xx or network failure ends the walk. */
  attempts?: number
  /** The first wait between tries when Persona gives no Retry-After; it doubles, up to 30 s. */
  backoffMs?: number
  pageSize?: number
  timeoutMs?: number
}

export interface EventPage {
  /** Raw items, newest first; each is checked by the caller, so that one odd item does not end the walk. */
  items: unknown[]
}

const MAX_BACKOFF_MS = 30_000
/** Persona may ask for a pause; a longer one than this is a stuck run, better failed and retried later. */
const MAX_RETRY_AFTER_MS = 5 * 60_000

type Verdict = { body: unknown } | { retry: string; waitMs: number | undefined }

/**
 * Client of `GET /api/v1/events`. The API key is sent in a header only, and no error message holds
 * it or a response body.
 */
export class PersonaEventsApi {
  private readonly attempts: number
  private readonly backoffMs: number
  private readonly pageSize: number
  private readonly timeoutMs: number
  private readonly origin: string

  constructor(private readonly config: PersonaApiConfig, options: EventsApiOptions = {}) {
    this.attempts = options.attempts ?? 6
    this.backoffMs = options.backoffMs ?? 1000
    this.pageSize = options.pageSize ?? MAX_PAGE_SIZE
    this.timeoutMs = options.timeoutMs ?? 30_000
    this.origin = new URL(config.baseUrl).origin
  }

  /** Pages of the organisation's events, newest first, until Persona has no more or the caller stops iterating. */
  async *pages(signal: AbortSignal): AsyncGenerator<EventPage> {
    let url: URL | undefined = new URL('/api/v1/events', this.origin)
    url.searchParams.set('page[size]', String(this.pageSize))
    while (url) {
      const body = await this.fetchPage(url, signal)
      const items = itemsOf(body)
      yield { items }
      url = nextPageUrl(url, body, items, this.pageSize, this.origin)
    }
  }

  private async fetchPage(url: URL, signal: AbortSignal): Promise<unknown> {
    for (let attempt = 1; ; attempt += 1) {
      const verdict = await this.attempt(url, signal)
      if ('body' in verdict) return verdict.body
      if (attempt >= this.attempts) throw new Errors.PERSONA_API_UNAVAILABLE(attempt, verdict.retry)
      const backoff = Math.min(this.backoffMs * 2 ** (attempt - 1), MAX_BACKOFF_MS)
      await sleep(Math.min(verdict.waitMs ?? backoff, MAX_RETRY_AFTER_MS), undefined, { signal })
    }
  }

  private async attempt(url: URL, signal: AbortSignal): Promise<Verdict> {
    let response: Awaited<ReturnType<typeof request>>
    let text: string
    try {
      response = await request(url, {
        method: 'GET',
        headers: this.headers(),
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.timeoutMs)])
      })
      text = await readCapped(response.body, MAX_PAGE_BYTES)
    } catch (error) {
      if (signal.aborted || error instanceof Errors.PERSONA_API_BAD_RESPONSE) throw error
      return { retry: (error as { code?: string }).code ?? (error as Error).name, waitMs: undefined }
    }
    const status = response.statusCode
    if (status === 401 || status === 403) throw new Errors.PERSONA_API_UNAUTHORIZED(status)
    if (status === 408 || status === 429 || status >= 500) {
      const retryAfter = response.headers['retry-after']
      return { retry: `HTTP ${status}`, waitMs: parseRetryAfter(typeof retryAfter === 'string' ? retryAfter : undefined, Date.now()) }
    }
    if (status < 200 || status >= 300) throw new Errors.PERSONA_API_REJECTED(status)
    try {
      return { body: JSON.parse(text) as unknown }
    } catch {
      throw new Errors.PERSONA_API_BAD_RESPONSE('the body is not JSON')
    }
  }

  private headers(): Record<string, string> {
    const { key, version, keyInflection } = this.config
    return {
      accept: 'application/json',
      authorization: `Bearer ${key}`,
      'user-agent': USER_AGENT,
      ...(version ? { 'persona-version': version } : {}),
      ...(keyInflection ? { 'key-inflection': keyInflection } : {})
    }
  }
}

async function readCapped(body: AsyncIterable<Buffer> & { destroy(): unknown }, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let length = 0
  for await (const chunk of body) {
    length += chunk.length
    if (length > limit) {
      body.destroy()
      throw new Errors.PERSONA_API_BAD_RESPONSE(`a page is larger than ${limit / (1024 * 1024)} MiB`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, length).toString('utf8')
}

function itemsOf(body: unknown): unknown[] {
  const data = (body as { data?: unknown } | null)?.data
  if (!Array.isArray(data)) throw new Errors.PERSONA_API_BAD_RESPONSE('no data array')
  return data
}

/**
 * Where the next page is: `links.next` when Persona gives one, otherwise `page[after]` the last id
 * of a full page. An empty page ends the walk. A link to another host is refused, as following it
 * would send the API key there.
 */
export function nextPageUrl(current: URL, body: unknown, items: unknown[], pageSize: number, origin: string): URL | undefined {
  if (items.length === 0) return undefined
  const next = (body as { links?: { next?: unknown } }).links?.next
  let url: URL
  if (typeof next === 'string' && next !== '') {
    url = new URL(next, origin)
    if (url.origin !== origin) throw new Errors.PERSONA_API_BAD_RESPONSE('links.next points to another host')
  } else {
    const lastId = (items.at(-1) as { id?: unknown } | null)?.id
    if (items.length < pageSize || typeof lastId !== 'string') return undefined
    url = new URL(current)
    url.searchParams.set('page[after]', lastId)
  }
  if (url.href === current.href) throw new Errors.PERSONA_API_BAD_RESPONSE('the next page is the same page')
  return url
}
