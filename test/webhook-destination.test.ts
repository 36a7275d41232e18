// Review of issue 18 (import/export containers share the webhook address rules): an IPv4-mapped IPv6
// address is judged as the IPv4 address it maps, in the hex form URL parsing writes too.
import { describe, expect, it } from 'vitest'
import { configuredRefusal, isLocalAddress, isPrivateAddress } from '../src/routing/webhook-destination.js'

describe('destination addresses', () => {
  it('judges IPv4-mapped IPv6 addresses as the IPv4 address they map', () => {
    expect(['::ffff:127.0.0.1', '::ffff:7f00:1', '[::ffff:a00:1]', '::ffff:c0a8:101'].map(isPrivateAddress)).toEqual([true, true, true, true])
    expect(['::ffff:808:808', '::ffff:8.8.8.8'].map(isPrivateAddress)).toEqual([false, false])
    expect(isLocalAddress('::ffff:7f00:1')).toBe(true)
    expect(configuredRefusal('https://[::ffff:127.0.0.1]:9443/c', { allowPrivate: false, hubPorts: [] })).toMatch(/loopback, link-local or private/)
    expect(configuredRefusal('https://[::ffff:127.0.0.1]:9443/c', { allowPrivate: true, hubPorts: [9443] })).toMatch(/this hub's own port 9443/)
  })
})
