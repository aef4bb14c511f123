import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config/index.js'

let config
try {
  config = loadConfig(process.env)
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  process.stderr.write(`persona-relay: ${error.message}\n`)
  process.exit(1)
}

const app = await buildApp(config).catch((error: unknown) => {
  // A problem found once Redis answered, such as data stored in another key layout.
  if (!(error instanceof ConfigError)) throw error
  process.stderr.write(`persona-relay: ${error.message}\n`)
  process.exit(1)
})

// Node reaps idle keep-alive connections once, when close() begins. A connection whose request is
// still in flight goes idle later and would hold close() for the whole keep-alive timeout (72 s),
// past the deadline: responses sent while shutting down close their connection instead.
let shuttingDown = false
app.addHook('onSend', async (_request, reply) => {
  if (shuttingDown) reply.header('connection', 'close')
})

// SIGTERM/SIGINT: stop accepting, let requests and deliveries in flight finish, close Redis, exit 0.
// Past the deadline the process exits anyway; unfinished deliveries return to their queue.
closeWithGrace({ delay: config.shutdownTimeoutMs, logger: app.log }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'shutting down after an unexpected error')
  else app.log.info({ signal }, 'shutting down')
  shuttingDown = true
  await app.close()
})

await app.listen({ port: config.port, host: config.host })
