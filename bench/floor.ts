// The framework floor: a Fastify route that only reads the raw body and answers 200.
import Fastify from 'fastify'

const app = Fastify({ logger: false, bodyLimit: 1048576 })
app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))
app.post('/webhooks/persona', async (request) => ({ received: true, bytes: (request.body as Buffer).length }))
const address = await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' })
process.stdout.write(`${JSON.stringify({ ready: address })}\n`)
process.on('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
