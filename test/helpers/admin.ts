import type { Static } from 'typebox'
import type { App } from '../../src/app.js'
import type { DeliveryList, EventSchema, SubscriberList, SubscriberSchema } from '../../src/ops/admin/schemas.js'

export const ADMIN_TOKEN = 'admin-token-0123456789abcdef'

/** An `Authorization: Basic …` header, as a browser sends it. */
export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
}

export type EventView = Static<typeof EventSchema>
export type DeliveryListView = Static<typeof DeliveryList>
export type SubscriberView = Static<typeof SubscriberSchema>
export type SubscriberListView = Static<typeof SubscriberList>

export interface AdminAnswer<T> {
  statusCode: number
  body: T
}

/** One admin API call with the right bearer token; without `body` the request has none at all. */
export async function admin<T = Record<string, unknown>>(app: App, method: 'GET' | 'POST', url: string, body?: unknown): Promise<AdminAnswer<T>> {
  const response = await app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    ...(body !== undefined ? { payload: body as object } : {})
  })
  return { statusCode: response.statusCode, body: response.json() as T }
}

/** GET /admin/events/:id, failing the test unless it answers 200. */
export async function eventView(app: App, eventId: string): Promise<EventView> {
  const { statusCode, body } = await admin<EventView>(app, 'GET', `/admin/events/${eventId}`)
  if (statusCode !== 200) throw new Error(`event view answered ${statusCode}: ${JSON.stringify(body)}`)
  return body
}
