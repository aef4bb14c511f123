import { readFileSync } from 'node:fs'
import type { ChainableCommander } from 'ioredis'
import type { RedisClient } from './redis.js'

/**
 * Every Lua script of the relay is a file in ./scripts, named after what it does and how many keys
 * it takes (BullMQ's habit); they are read once and defined on a connection by `withScripts`.
 */
const SCRIPTS = {
  recordEvent: 'record-event-4',
  lookupBody: 'lookup-body-2',
  holdBody: 'hold-body-2',
  releaseBody: 'release-body-2',
  redactBody: 'redact-body-2',
  ratePermit: 'rate-permit-1',
  laneAcquire: 'lane-acquire-2',
  laneRelease: 'lane-release-2'
} as const

type ScriptName = keyof typeof SCRIPTS

const sources = new Map<ScriptName, { lua: string; numberOfKeys: number }>()

function source(name: ScriptName) {
  let script = sources.get(name)
  if (!script) {
    const file = SCRIPTS[name]
    script = {
      lua: readFileSync(new URL(`./scripts/${file}.lua`, import.meta.url), 'utf8'),
      numberOfKeys: Number(/-(\d+)$/.exec(file)![1])
    }
    sources.set(name, script)
  }
  return script
}

type ScriptArgument = string | number

/** A pipeline or transaction of a scripted connection: the scripts are commands of it too, keys first. */
export interface ScriptedTransaction extends ChainableCommander {
  recordEvent(...keysThenArgs: ScriptArgument[]): ScriptedTransaction
  lookupBody(...keysThenArgs: ScriptArgument[]): ScriptedTransaction
  holdBody(...keysThenArgs: ScriptArgument[]): ScriptedTransaction
  releaseBody(...keysThenArgs: ScriptArgument[]): ScriptedTransaction
  redactBody(...keysThenArgs: ScriptArgument[]): ScriptedTransaction
  ratePermit(...keysThenArgs: ScriptArgument[]): ScriptedTransaction
  laneAcquire(...keysThenArgs: ScriptArgument[]): ScriptedTransaction
  laneRelease(...keysThenArgs: ScriptArgument[]): ScriptedTransaction
}

/** A connection with every script defined: each is a command, keys first, then arguments, as in the files. */
export type ScriptedRedis = RedisClient & { [Name in ScriptName]: (...keysThenArgs: ScriptArgument[]) => Promise<unknown> }

/** A pipeline of a scripted connection. */
export function pipelineOf(redis: ScriptedRedis): ScriptedTransaction {
  return redis.pipeline() as ScriptedTransaction
}

/**
 * Defines every script on the connection, once; ioredis then sends each by its SHA and copies the
 * definitions onto the connection's pipelines and transactions.
 */
export function withScripts(redis: RedisClient): ScriptedRedis {
  for (const name of Object.keys(SCRIPTS) as ScriptName[]) {
    if (!(name in redis)) redis.defineCommand(name, source(name))
  }
  return redis as ScriptedRedis
}
