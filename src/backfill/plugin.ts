import fp from 'fastify-plugin'
import type { Config } from '../config/index.js'
import { backfillKeys } from '../store/keys.js'
import { Backfiller } from './backfiller.js'
import { startContinuousBackfill } from './continuous.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Undefined without PERSONA_API_KEY. */
    backfill: Backfiller | undefined
  }
}

export const backfillPlugin = fp<{ config: Config }>(
  async (app, { config }) => {
    const { personaApi } = config
    const backfiller = personaApi
      ? new Backfiller({ config: { ...config, personaApi }, redis: app.redis, store: app.eventStore, metrics: app.metrics, log: app.log })
      : undefined
    app.decorate('backfill', backfiller)
    // Scheduled runs belong with delivery work, off the instances that answer Persona.
    const stopSchedule = backfiller && config.backfillIntervalMs && config.role !== 'intake'
      ? startContinuousBackfill({
          backfiller,
          redis: app.redis,
          markerKey: backfillKeys(config.redis.layout.prefix).newest,
          intervalMs: config.backfillIntervalMs,
          log: app.log
        })
      : undefined
    app.addHook('onClose', async () => {
      await Promise.all([stopSchedule?.(), backfiller?.close()])
    })
  },
  { name: 'backfill', dependencies: ['redis', 'event-store', 'metrics'] }
)
