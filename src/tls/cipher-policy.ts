// The suites and groups the hub's TLS listeners offer, fastest first for its ECDSA P-256 certificate.
// Every ECDSA suite the listeners took with Node's defaults is still taken (except ARIA), so no
// device that connected before is refused: the Azure IoT SDKs' TLS 1.2 list (ECDHE-ECDSA with
// AES-GCM, and AES-CBC with SHA-2 or SHA-1 on older stacks) and mbedTLS' CCM suites on small devices.
// Only the order changed: AES-128-GCM before AES-256-GCM (fewer rounds, the same handshake), and
// the server's order wins (honorCipherOrder), except that a client listing ChaCha20 first (one
// without AES instructions) gets it.
import { constants } from 'node:crypto'
import type tls from 'node:tls'

export const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']

export const TLS12_SUITES = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-CCM', 'ECDHE-ECDSA-AES256-CCM', 'ECDHE-ECDSA-AES128-CCM8', 'ECDHE-ECDSA-AES256-CCM8',
  'ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES256-SHA384', 'ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA',
]

/** X25519 first (the share Node, OpenSSL and most TLS 1.3 clients send first); P-256 for TLS 1.2 stacks without it, P-384 for the few that insist. */
export const ECDH_CURVES = 'X25519:P-256:P-384'

export function cipherOptions(): tls.TlsOptions {
  return {
    // Node splits TLS_* names out to the TLS 1.3 suite list itself
    ciphers: [...TLS13_SUITES, ...TLS12_SUITES].join(':'),
    ecdhCurve: ECDH_CURVES,
    honorCipherOrder: true,
    secureOptions: constants.SSL_OP_PRIORITIZE_CHACHA,
  }
}
