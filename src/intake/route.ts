import { isUtf8 } from 'node:buffer'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import type { Config } from '../config/index.js'
import { ErrorResponse, Errors, toServiceError } from '../errors.js'
import { PersonaEventEnvelope, toPersonaEvent } from '../persona/event.js'
import { createEventRouter } from '../config/routing.js'
import { createAllowlist } from '../persona/source-allowlist.js'
import { outcomeOfError, type IntakeOutcome } from './outcome.js'
import { verifyPersonaSignature } from './verify-signature.js'
import { traceparentOf } from '../trace-context.js'
import type { FastifyRequest } from 'fastify'

const Received = Type.Object({
  received: Type.Literal(true),
  id: Type.String(),
  duplicate: Type.Optional(Type.Literal(true))
})

interface IntakeContext {
  outcome?: IntakeOutcome
  eventId?: string
  eventName?: string
}

declare module 'fastify' {
  interface FastifyRequest {
    intake: IntakeContext | null
    rawBody?: Buffer
  }
}

/** The request span's context, kept with the event so that every attempt, on any instance, links back to it. */
function traceparentOfRequest(request: FastifyRequest): string | undefined {
  if (!request.server.tracer) return undefined
  const span = request.opentelemetry().span
  return span ? traceparentOf(span.spanContext()) : undefined
}

/** `POST {PERSONA_WEBHOOK_PATH}`: verify, validate, record once, acknowledge. */
export const intakeRoutes: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  const routeEvent = createEventRouter(config.subscribers)
  const allowed = config.allowedIps.length > 0 ? createAllowlist(config.allowedIps) : undefined
  // Only envelope fields are read and the signed bytes are what is forwarded, so a `__proto__` or
  // `constructor.prototype` key is harmless: dropped from the parsed object, never refused, as
  // refusing a signed body would refuse each of Persona's retries of it too.
  const parseJson = app.getDefaultJsonParser('remove', 'remove')
  // Only JSON is a webhook: everything else (text/plain included) is 415 here.
  app.removeAllContentTypeParsers()
  // The parser keeps the exact bytes (request.rawBody) that Persona signed and subscribers get,
  // and only reads them as JSON. JSON is UTF-8 (RFC 8259), and the stored body is read back for
  // delivery as a string, which only UTF-8 survives: other bytes are not JSON.
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const raw = body as Buffer
    request.rawBody = raw
    if (raw.length === 0 || !isUtf8(raw)) return done(new Errors.INVALID_JSON(), undefined)
    parseJson(request, raw.toString('utf8'), done)
  })
  app.decorateRequest('intake', null)
  app.decorateRequest('rawBody', undefined)

  app.post(
    config.persona.path,
    {
      // The envelope is checked only once the signature holds (preHandler), hence attachValidation.
      attachValidation: true,
      schema: {
        body: PersonaEventEnvelope,
        response: { 200: Received, '4xx': ErrorResponse, '5xx': ErrorResponse }
      },
      onRequest: async (request) => {
        request.intake = {}
        // Before the body is read: a refused source costs no more than its headers.
        if (allowed && !allowed(request.ip)) throw new Errors.FORBIDDEN_SOURCE()
      },
      preHandler: verifyPersonaSignature(config.persona),
      onError: async (request, _reply, error) => {
        if (request.intake) request.intake.outcome = outcomeOfError(toServiceError(error))
      },
      // The request's span (tracing on) says what became of the webhook; it ends before onResponse.
      ...(app.tracer ? {
        onSend: async (request: FastifyRequest) => {
          const intake = request.intake ?? {}
          request.opentelemetry().span?.setAttributes({
            'persona.event.id': intake.eventId ?? '',
            'persona.event.name': intake.eventName ?? '',
            'persona_relay.intake.outcome': intake.outcome ?? 'error'
          })
        }
      } : {}),
      onResponse: async (request, reply) => {
        const intake = request.intake ?? {}
        const headers = request.headers
        app.metrics.intake(intake.outcome ?? 'error', reply.elapsedTime / 1000)
        request.log.info(
          {
            eventId: intake.eventId,
            eventName: intake.eventName,
            outcome: intake.outcome ?? 'error',
            statusCode: reply.statusCode,
            durationMs: Math.round(reply.elapsedTime * 10) / 10,
            personaAttemptsMade: headers['persona-webhook-attempts-made'],
            personaAttemptsLeft: headers['persona-webhook-attempts-left'],
            personaFirstAttemptedAt: headers['persona-webhook-first-attempted-at']
          },
          'intake'
        )
      }
    },
    async (request) => {
      if (request.validationError) throw new Errors.INVALID_EVENT()
      const raw = request.rawBody!
      const event = toPersonaEvent(request.body)
      const intake = request.intake!
      intake.eventId = event.id
      intake.eventName = event.name
      const routing = routeEvent(event)
      let recorded: Awaited<ReturnType<typeof app.eventStore.record>>
      try {
        recorded = await app.eventStore.record({ ...event, ...routing, body: raw.toString('utf8'), source: 'webhook', traceparent: traceparentOfRequest(request) })
      } catch (error) {
        request.log.warn({ eventId: event.id, err: { message: (error as Error).message } }, 'event store unavailable')
        throw error instanceof Errors.REPLICAS_UNCONFIRMED ? error : new Errors.STORE_UNAVAILABLE()
      }
      if (recorded === 'duplicate') {
        intake.outcome = 'duplicate'
        return { received: true as const, id: event.id, duplicate: true as const }
      }
      app.metrics.routed(routing)
      intake.outcome = routing.subscribers.length > 0 ? 'accepted' : 'no_subscriber'
      return { received: true as const, id: event.id }
    }
  )
}
