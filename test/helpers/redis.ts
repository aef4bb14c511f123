import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'

export interface TestRedis {
  port: number
  url: string
  /** Starts the server again on the same port (after stop or kill), with the same data directory. */
  start(): Promise<void>
  /** SIGKILL, as in a crash. */
  kill(): Promise<void>
  stop(): Promise<void>
}

export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/**
 * A throwaway redis-server on a free port, never the developer's own. No persistence unless asked,
 * so stopping it loses everything, as a crash of an unpersisted Redis would.
 */
export async function startRedis(options: {
  appendOnly?: boolean
  replicaOf?: number
  /** TLS only, on the port (rediss://), with this certificate and key (PEM files). */
  tls?: { cert: string; key: string }
} = {}): Promise<TestRedis> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'persona-relay-redis-'))
  let child: ChildProcess | undefined

  const start = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir,
      '--appendonly', options.appendOnly ? 'yes' : 'no', '--maxmemory-policy', 'noeviction',
      ...(options.replicaOf ? ['--replicaof', '127.0.0.1', String(options.replicaOf)] : []),
      ...(options.tls ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', options.tls.cert, '--tls-key-file', options.tls.key, '--tls-auth-clients', 'no'] : [])]
    const spawned = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child = spawned
    let output = ''
    await new Promise<void>((resolve, reject) => {
      spawned.once('error', (error: NodeJS.ErrnoException) => {
        reject(error.code === 'ENOENT'
          ? new Error('redis-server is not installed: the tests start their own throwaway Redis (apt-get install redis-server)')
          : error)
      })
      spawned.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) resolve()
      })
      spawned.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output.slice(-500)}`)))
    })
    spawned.stdout!.resume()
  }

  const halt = async (signal: NodeJS.Signals) => {
    const current = child
    child = undefined
    if (!current || current.exitCode !== null) return
    const exited = once(current, 'exit')
    current.kill(signal)
    await exited
  }

  await start()
  return {
    port,
    url: `${options.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    start,
    kill: () => halt('SIGKILL'),
    stop: async () => {
      await halt('SIGTERM')
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** The key layout of one node with one intake partition: the strings deployments have always used. */
export function singleNode(prefix = 'persona-relay') {
  return { prefix, partitions: 1, tagged: false }
}
