// Where a webhook endpoint may send telemetry. Routing is owner-only, but a webhook still must not
// become a way into the hub's own network: loopback, link-local, private and unspecified addresses
// are refused unless the hub is told to allow them (`allowPrivateWebhooks`, for local receivers and
// tests), and the hub's own ports on its own addresses are refused always. The check runs where the
// connection is made (the address DNS gave for this connection, not one looked up earlier), and
// once when the endpoint is configured, for an immediate 400.
import dns from 'node:dns'
import { isIP } from 'node:net'
import { networkInterfaces } from 'node:os'

export interface DestinationPolicy {
  allowPrivate: boolean
  /** ports the hub listens on (a webhook to them on this machine would loop back into the hub) */
  hubPorts: number[]
}

export class DestinationRefused extends Error {
  readonly code = 'DESTINATION_REFUSED'
}

function ipv4Parts(ip: string): number[] | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip)
  return m ? m.slice(1).map(Number) : undefined
}

/** An IPv4-mapped IPv6 address as its IPv4 one, in either form (`::ffff:127.0.0.1`, or `::ffff:7f00:1` as URL parsing writes it). */
function unmapped(address: string): string {
  const ip = address.toLowerCase().replace(/^\[|\]$/g, '')
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(ip)
  if (dotted) return dotted[1]!
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(ip)
  if (!hex) return ip
  const [hi, lo] = [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16)]
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}

/** Loopback, link-local, private, carrier-grade NAT, unspecified or multicast. */
export function isPrivateAddress(address: string): boolean {
  const ip = unmapped(address)
  const v4 = ipv4Parts(ip)
  if (v4) {
    const [a, b] = v4 as [number, number]
    return a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)
      || (a === 100 && b >= 64 && b <= 127) || a >= 224
  }
  return ip === '::' || ip === '::1' || /^f[cd]/.test(ip) || /^fe[89ab]/.test(ip) || /^ff/.test(ip)
}

/** An address of this machine: its interfaces, loopback, unspecified. */
export function isLocalAddress(address: string): boolean {
  const ip = unmapped(address)
  if (ip === '0.0.0.0' || ip === '::' || ip === '::1' || ip.startsWith('127.')) return true
  return Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address.toLowerCase() === ip))
}

function port(url: URL): number {
  return url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80
}

/** Why `address` may not receive this webhook, or undefined when it may. */
export function refusal(address: string, url: URL, policy: DestinationPolicy): string | undefined {
  if (isLocalAddress(address) && policy.hubPorts.includes(port(url))) return `the url names this hub's own port ${port(url)}`
  if (!policy.allowPrivate && isPrivateAddress(address)) return 'the url names a loopback, link-local or private address (set allowPrivateWebhooks to allow it)'
  return undefined
}

/** The check at configuration time: literal addresses and localhost (names that resolve are checked at connect). */
export function configuredRefusal(rawUrl: string, policy: DestinationPolicy): string | undefined {
  const url = new URL(rawUrl)
  const host = url.hostname.replace(/^\[|\]$/g, '')
  if (host.toLowerCase() === 'localhost' || host.toLowerCase().endsWith('.localhost')) return refusal('127.0.0.1', url, policy)
  return isIP(host) ? refusal(host, url, policy) : undefined
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void

/** A `lookup` for the connection to `url`: resolves as usual, then refuses what the policy forbids. */
export function guardedLookup(url: URL, policy: () => DestinationPolicy) {
  return (hostname: string, options: dns.LookupOptions, callback: LookupCallback): void => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, [])
      for (const a of addresses) {
        const why = refusal(a.address, url, policy())
        if (why) return callback(new DestinationRefused(why) as NodeJS.ErrnoException, [])
      }
      if (options.all) return callback(null, addresses)
      callback(null, addresses[0]!.address, addresses[0]!.family)
    })
  }
}
