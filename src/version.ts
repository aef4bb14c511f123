import { readFileSync } from 'node:fs'

// Resolved from src/ under test and from dist/ in production: both sit one level below package.json.
const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  name: string
  version: string
}

export const USER_AGENT = `${manifest.name}/${manifest.version}`
