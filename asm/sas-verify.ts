// The signature check of a SAS token: HMAC-SHA256 of the string-to-sign under the decoded key,
// compared in constant time with the decoded `sig`.
import { base64Decode } from './base64'
import { hmacSha256 } from './hmac-sha256'

const DIGEST: usize = memory.data(32, 16)

/**
 * 1 if base64(sig) decodes to HMAC-SHA256(base64-decoded key, msg), else 0.
 * `work` must have room for keyLen * 3 / 4 + sigLen * 3 / 4 + 8 bytes.
 */
export function verifySignature(msg: usize, msgLen: i32, key: usize, keyLen: i32, sig: usize, sigLen: i32, work: usize): i32 {
  const rawKeyLen = base64Decode(key, keyLen, work)
  const given = work + <usize>rawKeyLen
  const givenLen = base64Decode(sig, sigLen, given)
  hmacSha256(work, rawKeyLen, msg, msgLen, DIGEST)
  if (givenLen != 32) return 0 // the length is public; the bytes are compared in constant time
  let diff: u32 = 0
  for (let i: usize = 0; i < 32; i++) diff |= <u32>(load<u8>(DIGEST + i) ^ load<u8>(given + i))
  return <i32>(diff == 0)
}
