import { consoleOutput, UsageError, type Output } from './args.js'
import { BACKFILL_USAGE, backfill } from './backfill.js'
import { DEMO_SUBSCRIBER_USAGE, demoSubscriber, stopOnSignals } from './demo-subscriber.js'
import { SEND_USAGE, send } from './send.js'
import { VERIFY_USAGE, verify } from './verify.js'

const USAGE = `persona-relay <command>

Commands:
  send             sign and post a test Persona webhook to a relay
  verify           check a body and Persona-Signature header, and say why they do not verify
  demo-subscriber  a subscriber that checks our signature and logs event ids
  backfill         fetch events the relay missed from Persona's Events API and queue them

The service itself runs with \`npm start\` (bin/serve, which starts dist/server.js).

${SEND_USAGE}

${VERIFY_USAGE}

${DEMO_SUBSCRIBER_USAGE}

${BACKFILL_USAGE}`

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/**
 * Runs one command; resolves with the exit code (a long-running command resolves with undefined).
 * `stdin` reads the whole standard input, for `verify --body -`; tests pass their own.
 */
export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv,
  output: Output = consoleOutput,
  stdin: () => Promise<Buffer> = readStdin
): Promise<number | undefined> {
  const [command, ...rest] = argv
  try {
    switch (command) {
      case 'send':
        return (await send(rest, env, output)) === 0 ? 0 : 1
      case 'verify':
        return await verify(rest, env, output, stdin)
      case 'backfill':
        return await backfill(rest, env, output)
      case 'demo-subscriber':
        stopOnSignals(await demoSubscriber(rest, env, output), output)
        return undefined
      case undefined:
      case 'help':
      case '--help':
        output.out(USAGE)
        return command === undefined ? 2 : 0
      default:
        throw new UsageError(`unknown command "${command}"`)
    }
  } catch (error) {
    const usageMistake = error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
    if (!usageMistake) throw error
    output.err(`persona-relay: ${(error as Error).message}\n\n${USAGE}`)
    return 2
  }
}
