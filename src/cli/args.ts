import { readFile } from 'node:fs/promises'
import { splitList } from '../config/index.js'

/** Thrown for a usage mistake: the CLI prints the message and the command's usage, and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

export interface Output {
  out(line: string): void
  err(line: string): void
}

export const consoleOutput: Output = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`)
}

export function requireValue(value: string | undefined, what: string): string {
  if (value === undefined || value === '') throw new UsageError(`${what} is required`)
  return value
}

export function positiveInteger(value: string | undefined, what: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`${what} must be a positive integer`)
  return Number(value)
}

/** A comma-separated list that must hold at least one item: `--secret ,` is as good as no secret. */
export function requireList(value: string | undefined, what: string): string[] {
  const items = splitList(value ?? '')
  if (items.length === 0) throw new UsageError(`${what} is required`)
  return items
}

/** A file's bytes; a file that cannot be read is a usage mistake, not a crash with a stack trace. */
export async function readInputFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
  }
}
