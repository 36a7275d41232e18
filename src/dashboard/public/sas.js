// Service SAS tokens made in the browser with WebCrypto, as the hub checks them
// (src/auth/sas-token.ts): HMAC-SHA256 of "<sr>\n<se>" under the base64-decoded policy key, `sr` the
// hub's host name, `skn` the policy. The key stays in this tab (sessionStorage) and is never sent.

/** `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` → its parts, or an Error saying what is wrong. */
export function parseConnectionString(text) {
  const parts = {}
  for (const item of text.trim().split(';')) {
    if (item.trim() === '') continue
    const eq = item.indexOf('=')
    if (eq <= 0) throw new Error('a connection string is Name=value pairs separated by ";"')
    parts[item.slice(0, eq).trim().toLowerCase()] = item.slice(eq + 1).trim()
  }
  if (parts.deviceid) throw new Error('that is a device\'s connection string: paste a shared access policy\'s (SharedAccessKeyName=…)')
  const hostName = parts.hostname, keyName = parts.sharedaccesskeyname, key = parts.sharedaccesskey
  if (!hostName || !keyName || !key) throw new Error('the connection string needs HostName, SharedAccessKeyName and SharedAccessKey')
  decodeKey(key)
  return { hostName, keyName, key }
}

function decodeKey(key) {
  try {
    return Uint8Array.from(atob(key), (c) => c.charCodeAt(0))
  } catch {
    throw new Error('SharedAccessKey is not base64')
  }
}

function base64(bytes) {
  let s = ''
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b)
  return btoa(s)
}

/** A token the hub accepts for `ttlSeconds`; `expiresAt` in ms. */
export async function serviceToken({ hostName, keyName, key }, ttlSeconds = 3600) {
  if (!globalThis.crypto?.subtle) throw new Error('this page is not a secure context (WebCrypto is missing): open it over https')
  const sr = encodeURIComponent(hostName.toLowerCase())
  const se = Math.floor(Date.now() / 1000) + ttlSeconds
  const hmacKey = await crypto.subtle.importKey('raw', decodeKey(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
  const sig = base64(await crypto.subtle.sign('HMAC', hmacKey, new TextEncoder().encode(`${sr}\n${se}`)))
  return { token: `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=${encodeURIComponent(keyName)}`, expiresAt: se * 1000 }
}
