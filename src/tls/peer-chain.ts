// The certificates a TLS client presented: its leaf first, then the chain it sent (as Node links
// it), so a CA-signed device's intermediates reach the check. Bounded: a client cannot make the
// hub walk a long chain. Read through getPeerCertificate(true) only: on Node 20, calling
// getPeerX509Certificate() first leaves the detailed chain without its issuers.
import { X509Certificate } from 'node:crypto'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'

const MAX_CHAIN = 6

/**
 * A client's certificates, leaf first. From a resumed TLS session only the leaf is there: OpenSSL
 * keeps no peer chain in a session or ticket, so the hub may complete it with intermediates it has
 * verified before (learned-intermediates.ts), which it does for no full handshake (Azure asks a
 * device to send its chain).
 */
export type PresentedChain = X509Certificate[] & { fromResumedSession?: true }

export function peerCertificateChain(socket: TLSSocket): PresentedChain | undefined {
  let node: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true)
  if (!node?.raw) return undefined
  const chain: PresentedChain = [new X509Certificate(node.raw)]
  if (socket.isSessionReused()) chain.fromResumedSession = true
  while (chain.length < MAX_CHAIN) {
    const next: DetailedPeerCertificate | undefined = node.issuerCertificate
    // a self-signed certificate is its own issuer: the walk ends there
    if (!next?.raw || next === node) break
    chain.push(new X509Certificate(next.raw))
    node = next
  }
  return chain
}
