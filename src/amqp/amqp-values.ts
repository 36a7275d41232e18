// Values as AMQP carries them and the hub reads them: ids that may be uuids, bodies that may be data
// sections or AMQP values, and the error conditions the Azure clients map to their error types.
import { HubError } from '../rest/hub-error.js'

/** AMQP ids arrive as strings, numbers, or 16-byte uuids. */
export function idText(id: unknown): string | undefined {
  if (id === undefined || id === null) return undefined
  if (Buffer.isBuffer(id) && id.length === 16) {
    const h = id.toString('hex')
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
  }
  return String(id)
}

/** A body's bytes, whether a data section, an AMQP value or a bare value. */
export function bodyBytes(body: unknown): Buffer {
  const b = body as { typecode?: number; content?: unknown } | undefined
  const content = b && typeof b === 'object' && 'typecode' in b ? b.content : body
  if (content === undefined || content === null) return Buffer.alloc(0)
  if (Buffer.isBuffer(content)) return content
  return Buffer.from(typeof content === 'string' ? content : JSON.stringify(content))
}

/** A HubError as the condition the client maps to its error type (Azure's mapping). */
export function hubErrorCondition(e: unknown): { condition: string; description: string } {
  if (!(e instanceof HubError)) return { condition: 'amqp:internal-error', description: 'internal error' }
  const byCode: Record<number, string> = {
    404001: 'amqp:not-found', 400003: 'amqp:not-allowed', 403010: 'amqp:not-allowed', 429001: 'com.microsoft:device-container-throttled', 429002: 'com.microsoft:device-container-throttled', 403004: 'amqp:resource-limit-exceeded', 413001: 'amqp:link:message-size-exceeded', 503001: 'com.microsoft:timeout', 503005: 'com.microsoft:server-busy',
  }
  return { condition: byCode[e.code] ?? (e.status === 400 ? 'com.microsoft:argument-error' : 'amqp:internal-error'), description: e.message }
}
