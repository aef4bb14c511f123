import { hostname } from 'node:os'
import { randomUUID } from 'node:crypto'
import type { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { EventBodies } from '../store/event-bodies.js'
import type { DeliveryJobData } from './job.js'

/** The consumer group every relay instance reads the intake stream in. */
export const FANOUT_GROUP = 'fanout'
const BATCH = 256
const BLOCK_MS = 1000
/** An entry read by a consumer that has not acknowledged it for this long is taken over. */
const ABANDONED_AFTER_MS = 30_000
const CLAIM_EVERY_MS = 10_000

export interface FanoutOptions {
  /** Dedicated: it spends most of its time blocked in XREADGROUP. */
  connection: Redis
  streamKey: string
  queues: ReadonlyMap<string, Queue<DeliveryJobData>>
  jobOptions: (subscriber: string) => object
  /** Released for a routed subscriber that is no longer configured, which will never take it. */
  bodies: EventBodies
  log: FastifyBaseLogger
  /** How long an entry may stay unacknowledged by its consumer before another takes it over. */
  abandonedAfterMs?: number
  claimEveryMs?: number
}

type StreamEntry = [id: string, fields: string[]]

/**
 * Turns intake records into one delivery job per routed subscriber. Entries are acknowledged and
 * deleted only after every job exists; a crash in between replays the entry, and the job id (the
 * event id) makes the replay add nothing twice. Several instances share the work through the
 * consumer group.
 */
export class Fanout {
  private readonly consumer = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
  private running = false
  private stopping = false
  private groupReady = false
  private loop: Promise<void> | undefined
  private lastClaim = 0
  private readonly abandonedAfterMs: number
  private readonly claimEveryMs: number

  constructor(private readonly options: FanoutOptions) {
    this.abandonedAfterMs = options.abandonedAfterMs ?? ABANDONED_AFTER_MS
    this.claimEveryMs = options.claimEveryMs ?? CLAIM_EVERY_MS
  }

  start(): void {
    this.running = true
    this.loop = this.run().finally(() => {
      this.running = false
    })
  }

  isRunning(): boolean {
    return this.running && !this.stopping
  }

  /** Lets the current batch finish; a loop stuck on an unreachable Redis is cut off. */
  async stop(): Promise<void> {
    this.stopping = true
    const finished = await Promise.race([
      this.loop?.then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), BLOCK_MS * 2).unref())
    ])
    if (finished) await this.options.connection.quit().catch(() => undefined)
    this.options.connection.disconnect()
    await this.loop
  }

  private async run(): Promise<void> {
    const { connection, streamKey, log } = this.options
    let failures = 0
    while (!this.stopping) {
      try {
        await this.ensureGroup()
        if (Date.now() - this.lastClaim >= this.claimEveryMs) await this.claimAbandoned()
        const reply = (await connection.xreadgroup(
          'GROUP', FANOUT_GROUP, this.consumer, 'COUNT', BATCH, 'BLOCK', BLOCK_MS, 'STREAMS', streamKey, '>'
        )) as [string, StreamEntry[]][] | null
        const entries = reply?.[0]?.[1] ?? []
        if (entries.length > 0) await this.dispatch(entries)
        failures = 0
      } catch (error) {
        if (this.stopping) break
        // A Redis that restarted without its data, or a deleted stream, has lost the group too.
        if ((error as Error).message.includes('NOGROUP')) this.groupReady = false
        failures += 1
        log.warn({ err: { message: (error as Error).message }, failures }, 'fan-out failed; retrying')
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** failures, 2000)))
      }
    }
    await this.leaveGroup().catch(() => undefined)
  }

  private async ensureGroup(): Promise<void> {
    if (this.groupReady) return
    try {
      await this.options.connection.xgroup('CREATE', this.options.streamKey, FANOUT_GROUP, '0', 'MKSTREAM')
    } catch (error) {
      if (!(error as Error).message.includes('BUSYGROUP')) throw error
    }
    this.groupReady = true
  }

  private async claimAbandoned(): Promise<void> {
    const { connection, streamKey } = this.options
    let cursor = '0-0'
    do {
      const [next, entries, deleted] = (await connection.xautoclaim(
        streamKey, FANOUT_GROUP, this.consumer, this.abandonedAfterMs, cursor, 'COUNT', BATCH
      )) as [string, StreamEntry[], string[]]
      if (entries.length > 0) await this.dispatch(entries)
      if (deleted.length > 0) await connection.xack(streamKey, FANOUT_GROUP, ...deleted)
      cursor = next
    } while (cursor !== '0-0')
    this.lastClaim = Date.now()
  }

  private async dispatch(entries: StreamEntry[]): Promise<void> {
    const { connection, streamKey, queues, jobOptions, bodies, log } = this.options
    const jobsBySubscriber = new Map<string, { name: string; data: DeliveryJobData; opts: object }[]>()
    const released: Promise<void>[] = []
    for (const [, fields] of entries) {
      const record = fieldsToRecord(fields)
      const data: DeliveryJobData = {
        eventId: record.id ?? '',
        eventName: record.name ?? '',
        createdAt: record.createdAt ?? '',
        receivedAt: record.receivedAt ?? '',
        source: record.source ?? 'webhook'
      }
      for (const subscriber of (record.subscribers ?? '').split(',')) {
        if (!queues.has(subscriber)) {
          log.warn({ subscriber, eventId: data.eventId }, 'event routed to a subscriber that is no longer configured; skipped')
          released.push(bodies.settle(data.eventId, subscriber))
          continue
        }
        const jobs = jobsBySubscriber.get(subscriber) ?? []
        jobs.push({ name: data.eventName, data, opts: { ...jobOptions(subscriber), jobId: data.eventId } })
        jobsBySubscriber.set(subscriber, jobs)
      }
    }
    await Promise.all([
      ...[...jobsBySubscriber].map(([subscriber, jobs]) => queues.get(subscriber)!.addBulk(jobs)),
      ...released
    ])
    const ids = entries.map(([id]) => id)
    await connection.multi().xack(streamKey, FANOUT_GROUP, ...ids).xdel(streamKey, ...ids).exec()
  }

  private async leaveGroup(): Promise<void> {
    const { connection, streamKey } = this.options
    // Removing a consumer drops its pending entries, so only one that holds none may go.
    const pending = (await connection.xpending(streamKey, FANOUT_GROUP, '-', '+', 1, this.consumer)) as unknown[]
    if (pending.length === 0) await connection.xgroup('DELCONSUMER', streamKey, FANOUT_GROUP, this.consumer)
  }
}

function fieldsToRecord(fields: string[]): Record<string, string> {
  const record: Record<string, string> = {}
  for (let index = 0; index + 1 < fields.length; index += 2) record[fields[index]!] = fields[index + 1]!
  return record
}
