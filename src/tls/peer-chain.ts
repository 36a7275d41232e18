// The certificates a TLS client presented: its leaf first, then the chain it sent (as Node links
// it), so a CA-signed device's intermediates reach the check. Bounded: a client cannot make the
// hub walk a long chain. Read through getPeerCertificate(true) only: on Node 20, calling
// getPeerX509Certificate() first leaves the detailed chain without its issuers.
import { X509Certificate } from 'node:crypto'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'

const MAX_CHAIN = 6

export function peerCertificateChain(socket: TLSSocket): X509Certificate[] | undefined {
  let node: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true)
  if (!node?.raw) return undefined
  const chain = [new X509Certificate(node.raw)]
  while (chain.length < MAX_CHAIN) {
    const next: DetailedPeerCertificate | undefined = node.issuerCertificate
    // a self-signed certificate is its own issuer: the walk ends there
    if (!next?.raw || next === node) break
    chain.push(new X509Certificate(next.raw))
    node = next
  }
  return chain
}
