import { execFileSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SERVE = join(ROOT, 'bin/serve')
/** As the script names it, relative to its own directory, so that it runs from anywhere. */
const SERVER = `${join(ROOT, 'bin')}/../dist/server.js`

/** Runs bin/serve with a stand-in `node` first on the PATH that prints the arguments it was given. */
function nodeArgumentsOf(env: Record<string, string>, args: string[] = []): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'persona-relay-serve-'))
  try {
    writeFileSync(join(dir, 'node'), '#!/bin/sh\nprintf "%s\\n" "$@"\n')
    chmodSync(join(dir, 'node'), 0o755)
    const { NODE_HEAP_FLAGS: _ignored, ...inherited } = process.env
    const output = execFileSync(SERVE, args, { env: { ...inherited, ...env, PATH: `${dir}:${process.env.PATH}` }, encoding: 'utf8' })
    return output.trimEnd().split('\n')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

t.test('bin/serve starts dist/server.js with the measured heap settings', async (t) => {
  t.same(nodeArgumentsOf({}), ['--max-semi-space-size=8', '--heap-growing-percent=50', SERVER])
  t.same(nodeArgumentsOf({ NODE_HEAP_FLAGS: '' }), nodeArgumentsOf({}), 'empty counts as unset, as for every setting')
})

t.test('NODE_HEAP_FLAGS replaces the heap settings, word by word', async (t) => {
  t.same(nodeArgumentsOf({ NODE_HEAP_FLAGS: '--heap-growing-percent=0' }), ['--heap-growing-percent=0', SERVER])
  t.same(nodeArgumentsOf({ NODE_HEAP_FLAGS: '--max-old-space-size=256  --max-semi-space-size=4' }),
    ['--max-old-space-size=256', '--max-semi-space-size=4', SERVER])
})

t.test('arguments of bin/serve are node\'s own, after the heap flags', async (t) => {
  t.same(nodeArgumentsOf({}, ['--cpu-prof', '--cpu-prof-dir=/tmp/profiles']),
    ['--max-semi-space-size=8', '--heap-growing-percent=50', '--cpu-prof', '--cpu-prof-dir=/tmp/profiles', SERVER])
})
