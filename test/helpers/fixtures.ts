import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** The synthetic `inquiry.approved` webhook body (copied from Persona's protocol summary), exact bytes. */
export const FIXTURE_PATH = fileURLToPath(new URL('../fixtures/inquiry.approved.json', import.meta.url))
export const FIXTURE = readFileSync(FIXTURE_PATH, 'utf8')
export const FIXTURE_ID = 'evt_7QkT2mZr9VbX4nLp8sWc3hJd'

/** The independently computed signature vectors: one body signed under a new and an old secret. */
export interface Vectors {
  body: string
  t: number
  secret_new: string
  secret_old: string
  v1_new: string
  v1_old: string
  header_single: string
  header_rotation: string
}

export const VECTORS = JSON.parse(readFileSync(new URL('../fixtures/vectors.json', import.meta.url), 'utf8')) as Vectors
