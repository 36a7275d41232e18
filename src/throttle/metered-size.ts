// A D2C message's size as Azure meters it: the body, the system properties' values and the
// application properties' names and values (protocol framing and property-bag encoding ignored).
import { parsePropertyBag } from '../mqtt/property-bag.js'

/** Bytes to meter; exact whenever it decides the chunk count (the encoded bag is never smaller than what it carries). */
export function meteredSize(bag: string, payload: Uint8Array, chunkBytes: number): number {
  // the common case costs nothing: if even the encoded bag fits in one chunk with the body, so does the message
  if (payload.length + bag.length <= chunkBytes) return payload.length + bag.length
  try {
    return payload.length + parsePropertyBag(bag).size
  } catch {
    return payload.length + bag.length
  }
}
