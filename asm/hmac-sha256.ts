// HMAC-SHA256 (RFC 2104) on top of sha256.ts, no allocation.
import { sha256, sha256Blocks, sha256Final, sha256Init } from './sha256'

const KEY_BLOCK: usize = memory.data(64, 16)
const PAD_BLOCK: usize = memory.data(64, 16)
const INNER: usize = memory.data(32, 16)
const STATE: usize = memory.data(32, 16)

/** HMAC-SHA256 of msg[0..msgLen) under key[0..keyLen) into out[0..32). */
export function hmacSha256(key: usize, keyLen: i32, msg: usize, msgLen: i32, out: usize): void {
  memory.fill(KEY_BLOCK, 0, 64)
  if (keyLen > 64) sha256(key, keyLen, KEY_BLOCK) // long keys are hashed first
  else memory.copy(KEY_BLOCK, key, <usize>keyLen)

  for (let i: usize = 0; i < 64; i++) store<u8>(PAD_BLOCK + i, load<u8>(KEY_BLOCK + i) ^ 0x36)
  sha256Init(STATE)
  sha256Blocks(STATE, PAD_BLOCK, 1)
  const whole = msgLen >> 6
  sha256Blocks(STATE, msg, whole)
  sha256Final(STATE, msg + (<usize>whole << 6), msgLen & 63, 64 + msgLen, INNER)

  for (let i: usize = 0; i < 64; i++) store<u8>(PAD_BLOCK + i, load<u8>(KEY_BLOCK + i) ^ 0x5c)
  sha256Init(STATE)
  sha256Blocks(STATE, PAD_BLOCK, 1)
  sha256Final(STATE, INNER, 32, 96, out)
}
