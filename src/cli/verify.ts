import { parseArgs } from 'node:util'
import { verifySignature, parseSignatureHeader, computeSignature } from '../persona/signature.js'
import { positiveInteger, readInputFile, requireList, requireValue, type Output } from './args.js'

export const VERIFY_USAGE = `persona-relay verify --body <file|-> --header '<Persona-Signature value>' [--secret <wbhsec_…[,…]>] [--tolerance 300] [--now <unix seconds>]

Says whether a body and a Persona-Signature header verify, and if not, why: for debugging a 401.
Give the body exactly as received (a file, or - for standard input). The secret defaults to
PERSONA_WEBHOOK_SECRET; --now checks the time window against another moment than now.`

const EXPLANATIONS = {
  missing: 'the header is empty',
  malformed: 'the header has no usable t=<unix seconds>,v1=<hex> group (or more than 8 groups)',
  mismatch: 'no v1 matches this body under the given secret(s): wrong secret, or the body was changed (re-serialised JSON, a proxy, a trailing newline)',
  stale: 'a v1 matches, but its t is outside the time window (a replay, or a clock off by more than the tolerance)'
} as const

export async function verify(argv: string[], env: NodeJS.ProcessEnv, output: Output, stdin: () => Promise<Buffer>): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      body: { type: 'string' },
      header: { type: 'string' },
      secret: { type: 'string' },
      tolerance: { type: 'string' },
      now: { type: 'string' }
    }
  })
  const bodySource = requireValue(values.body, '--body')
  const header = requireValue(values.header, '--header')
  const secrets = requireList(values.secret ?? env.PERSONA_WEBHOOK_SECRET, '--secret (or PERSONA_WEBHOOK_SECRET)')
  const toleranceSeconds = positiveInteger(values.tolerance, '--tolerance', 300)
  const nowSeconds = positiveInteger(values.now, '--now', Math.floor(Date.now() / 1000))
  const body = bodySource === '-' ? await stdin() : await readInputFile(bodySource)

  const result = verifySignature(header, body, { secrets, toleranceSeconds, nowSeconds })
  if (result.ok) {
    output.out(`verified: signed at ${new Date(result.timestamp * 1000).toISOString()} (t=${result.timestamp})`)
    return 0
  }
  output.out(`not verified: ${EXPLANATIONS[result.reason]}`)
  for (const group of parseSignatureHeader(header) ?? []) {
    const age = nowSeconds - group.timestamp
    output.out(`  group t=${group.timestamp} (${age >= 0 ? `${age} s ago` : `${-age} s in the future`}), tolerance ${toleranceSeconds} s`)
    secrets.forEach((secret, index) => {
      output.out(`    secret #${index + 1} expects v1=${computeSignature(secret, group.timestamp, body)}`)
    })
  }
  return 1
}
