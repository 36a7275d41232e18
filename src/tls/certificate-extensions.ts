// What node:crypto's X509Certificate does not say about a certificate, read from its DER: the path
// length a CA's basic constraints allow below it.
import type { X509Certificate } from 'node:crypto'
import { children, oid, readTlv } from './der.js'

const BASIC_CONSTRAINTS = oid('2.5.29.19')

/** The extension's value (the OCTET STRING's content), or undefined when the certificate has none. */
function extensionValue(x: X509Certificate, extensionOid: Buffer): Buffer | undefined {
  const der = x.raw
  const tbs = children(der, readTlv(der))[0]
  if (!tbs) return undefined
  const extensions = children(der, tbs).find((f) => f.tag === 0xa3)
  if (!extensions) return undefined
  for (const ext of children(der, children(der, extensions)[0]!)) {
    const parts = children(der, ext)
    if (!der.subarray(parts[0]!.start, parts[0]!.end).equals(extensionOid)) continue
    const value = parts[parts.length - 1]!
    return der.subarray(value.contentStart, value.end)
  }
  return undefined
}

/** basicConstraints' pathLenConstraint: how many intermediates may follow this CA; undefined when unlimited. */
export function pathLengthConstraint(x: X509Certificate): number | undefined {
  const value = extensionValue(x, BASIC_CONSTRAINTS)
  if (!value) return undefined
  const fields = children(value, readTlv(value))
  const length = fields.find((f) => f.tag === 0x02)
  if (!length) return undefined
  let n = 0
  for (const b of value.subarray(length.contentStart, length.end)) n = n * 256 + b
  return n
}
