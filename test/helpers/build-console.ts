import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

// Run by tap before the test files (package.json `tap.before`): the relay serves the console's page
// as the build compiled it (src/ops/console/routes.ts), so a run never drives an older page. tsc
// takes seconds, so a build newer than every file of the page is kept.
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const SOURCE = join(ROOT, 'src/ops/console/page')
const BUILT = join(ROOT, 'dist/ops/console/page')

const mtimes = (dir: string) => readdirSync(dir).map((name) => statSync(join(dir, name)).mtimeMs)
const fresh = existsSync(join(BUILT, 'main.js')) && Math.min(...mtimes(BUILT)) >= Math.max(...mtimes(SOURCE))
if (!fresh) execFileSync('npm', ['run', '--silent', 'build:console'], { cwd: ROOT, stdio: 'inherit' })
