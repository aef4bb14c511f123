import { BlockList, isIP } from 'node:net'

/**
 * Persona's published webhook source addresses (its Security page, "Webhook and Workflow requests");
 * the list can change, so it is config.
 */
export const PERSONA_SOURCE_IPS = [
  // Germany
  '35.246.155.45', '34.89.193.61', '34.89.158.43', '35.198.149.197', '34.159.83.62', '34.159.68.157',
  // India
  '34.93.21.229', '35.244.13.71', '34.93.90.104', '34.93.222.99',
  // United States
  '35.232.44.140', '34.69.131.123', '34.67.4.225', '34.66.30.174', '34.123.74.158', '34.41.116.165',
  '34.145.62.98', '34.105.116.226', '34.168.249.74', '35.199.156.187', '34.105.58.25', '35.230.80.200'
]

export const PERSONA_KEYWORD = 'persona'

/** Why an allowlist entry is not an address or CIDR, or undefined when it is one. */
export function allowlistEntryProblem(entry: string): string | undefined {
  if (entry === PERSONA_KEYWORD) return undefined
  const [address, prefix, ...extra] = entry.split('/')
  const family = isIP(address ?? '')
  if (family === 0 || extra.length > 0) return `"${entry}" is not an IP address or CIDR`
  if (prefix === undefined) return undefined
  const max = family === 4 ? 32 : 128
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) return `"${entry}" has a prefix length outside 0-${max}`
  return undefined
}

/**
 * A predicate over client addresses from comma-separated entries: IPv4 and IPv6 addresses and
 * CIDRs, and `persona` for Persona's published list. Entries are assumed valid (see config).
 */
export function createAllowlist(entries: readonly string[]): (address: string) => boolean {
  const list = new BlockList()
  for (const entry of entries.flatMap((item) => (item === PERSONA_KEYWORD ? PERSONA_SOURCE_IPS : [item]))) {
    const [address, prefix] = entry.split('/') as [string, string | undefined]
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4'
    if (prefix === undefined) list.addAddress(address, type)
    else list.addSubnet(address, Number(prefix), type)
  }
  return (address) => {
    // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
    const plain = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address
    const family = isIP(plain)
    return family !== 0 && list.check(plain, family === 6 ? 'ipv6' : 'ipv4')
  }
}
