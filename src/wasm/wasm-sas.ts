// verifySasToken (src/auth/sas-token.ts) with the key decoding, HMAC and comparison in WASM.
// The strings go straight into the module's memory; nothing is allocated per call.
import { CLOCK_SKEW_SECONDS, TokenError, type SasToken } from '../auth/sas-token.js'
import { memoryBytes, ScratchRegion, wasm } from './hyperhub-wasm.js'

const region = new ScratchRegion(8192)

/** Checks expiry and the signature against any of the given keys; throws TokenError otherwise. */
export function verifySasTokenWasm(token: SasToken, keys: readonly string[], nowSeconds = Date.now() / 1000): void {
  if (token.expiry + CLOCK_SKEW_SECONDS < nowSeconds) throw new TokenError('token expired', 'expired')
  const resource = token.rawResource, expiry = token.rawExpiry, sig = token.signature
  let longestKey = 0
  for (const key of keys) if (key.length > longestKey) longestKey = key.length
  // worst cases: 3 UTF-8 bytes per UTF-16 unit in the message; decoded key and sig beside them
  const messageRoom = 3 * (resource.length + 1 + expiry.length)
  region.ensure(messageRoom + sig.length + longestKey + longestKey + sig.length + 16)
  const mem = memoryBytes
  const msgPtr = region.ptr
  let msgLen = mem.write(resource, msgPtr, 'utf8')
  mem[msgPtr + msgLen++] = 0x0a
  msgLen += mem.write(expiry, msgPtr + msgLen, 'utf8')
  const sigPtr = msgPtr + msgLen
  mem.write(sig, sigPtr, 'latin1') // as Node's base64 decoder reads a string
  const keyPtr = sigPtr + sig.length
  const workPtr = keyPtr + longestKey
  for (const key of keys) {
    if (!key) continue
    mem.write(key, keyPtr, 'latin1')
    if (wasm.verifySignature(msgPtr, msgLen, keyPtr, key.length, sigPtr, sig.length, workPtr) === 1) return
  }
  throw new TokenError('signature does not match', 'signature')
}
