import type { Static } from 'typebox'
import type { ErrorResponse } from '../../../errors.js'
import type { BackfillJob } from '../../../backfill/jobs.js'
import type { AttemptRecord, DeliveryView } from '../../../delivery/types.js'
import type { ActivitySchema, EventSearchResult, EventView, Retried, SubscriberList, SubscriberSchema } from '../../admin/schemas.js'

// The admin API's own shapes (erased from the output): the page reads nothing the API does not declare.
export type { AttemptRecord, BackfillJob, DeliveryView, EventView }
export type SearchResult = Static<typeof EventSearchResult>
export type Subscriber = Static<typeof SubscriberSchema>
export type Activity = Static<typeof ActivitySchema>

/** An answer other than 2xx, with the API's stable code. */
class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

/**
 * One call to the admin API. The browser adds the Basic credentials it signed in with; a change is
 * sent as JSON, as the API requires of a browser (see src/ops/admin/credentials.ts).
 */
async function call<T>(method: 'GET' | 'POST', path: string, body?: object): Promise<T> {
  const response = await fetch(`/admin/${path}`, {
    method,
    cache: 'no-store',
    credentials: 'same-origin',
    ...(method === 'POST' ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) } : {})
  })
  const answer = (await response.json().catch(() => undefined)) as T | Partial<ErrorResponse> | undefined
  if (response.ok) return answer as T
  const error = (answer ?? {}) as Partial<ErrorResponse>
  throw new ApiError(response.status, error.code ?? `HTTP_${response.status}`, error.message ?? response.statusText)
}

const segment = encodeURIComponent

export const api = {
  search: (query: URLSearchParams) => call<SearchResult>('GET', `events?${query}`),
  event: (id: string) => call<EventView>('GET', `events/${segment(id)}`),
  retry: (deliveryId: string) => call<DeliveryView>('POST', `deliveries/${segment(deliveryId)}/retry`),
  retryFailed: (range: { subscriber: string; since?: string; until?: string }) => call<Static<typeof Retried>>('POST', 'deliveries/retry', range),
  subscribers: () => call<Static<typeof SubscriberList>>('GET', 'subscribers'),
  activity: (name: string) => call<Activity>('GET', `subscribers/${segment(name)}/activity`),
  pause: (name: string) => call<Subscriber>('POST', `subscribers/${segment(name)}/pause`),
  resume: (name: string) => call<Subscriber>('POST', `subscribers/${segment(name)}/resume`),
  backfill: (range: { since: string; until?: string; dryRun: boolean }) => call<BackfillJob>('POST', 'backfill', range),
  backfillJob: (id: string) => call<BackfillJob>('GET', `backfill/${segment(id)}`)
}

/** What to tell the operator about a failed call. */
export function describeError(error: unknown): string {
  return error instanceof ApiError ? `${error.message} (${error.code})` : `The relay could not be reached (${(error as Error).message})`
}
