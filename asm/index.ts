// Entry point of the Hyperhub WASM module: hot paths only, no managed allocations (runtime stub),
// so everything past heapBase() is JS's scratch space to manage.
export { frameMqtt, encodePubacks, encodePingresp } from './mqtt-framer'
export { sha256 } from './sha256'
export { hmacSha256 } from './hmac-sha256'
export { base64Decode, base64Encode } from './base64'
export { verifySignature } from './sas-verify'
export { routeEval, routeEvalAll } from './route-vm'

/** First free byte after static data: JS places its scratch regions from here on. */
export function heapBase(): usize {
  return (__heap_base + 15) & ~<usize>15
}
