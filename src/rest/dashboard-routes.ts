// The dashboard's static files at /dashboard/ (src/dashboard/public, and uPlot from node_modules).
// Open to anyone: the files carry no secrets; the browser signs every API call itself. Only the
// files named here are served, read once at start, so no request path ever reaches the filesystem.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { RestRequest, RestResponse, Route } from './http-server.js'
import { errorBody, HubError } from './hub-error.js'

const PUBLIC = fileURLToPath(new URL('../dashboard/public/', import.meta.url))
const require = createRequire(import.meta.url)

/** URL name under /dashboard/ → file (names under `vendor/` come from node_modules). */
const FILES: Record<string, string> = {
  '': `${PUBLIC}index.html`,
  'index.html': `${PUBLIC}index.html`,
  'style.css': `${PUBLIC}style.css`,
  'favicon.svg': `${PUBLIC}favicon.svg`,
  ...Object.fromEntries(['app.js', 'api.js', 'sas.js', 'dom.js', 'charts.js', 'prometheus.js', 'login.js', 'devices.js', 'device.js',
    'telemetry.js', 'hub.js', 'routes.js'].map((f) => [f, `${PUBLIC}${f}`])),
  'vendor/uPlot.iife.min.js': require.resolve('uplot/dist/uPlot.iife.min.js'),
  'vendor/uPlot.min.css': require.resolve('uplot/dist/uPlot.min.css'),
}

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', svg: 'image/svg+xml',
}

/** A Host header fit to name in the policy (anything else could add directives to it). */
const HOST = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/

/**
 * Scripts, styles and connections from the hub only; the event stream is a WebSocket to the same
 * host (named explicitly: older browsers do not count wss: as 'self'). Trusted Types make any
 * string reaching innerHTML and the like throw, a second guard after building the DOM with textContent.
 */
export function contentSecurityPolicy(host: string | undefined): string {
  const wss = host && HOST.test(host) ? ` wss://${host}` : ''
  return [
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'", `connect-src 'self'${wss}`,
    "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'", "require-trusted-types-for 'script'", "trusted-types 'none'",
  ].join('; ')
}

function headers(req: RestRequest, type: string): Record<string, string> {
  return {
    'Content-Type': type, 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-cache', 'Referrer-Policy': 'no-referrer',
    'Content-Security-Policy': contentSecurityPolicy(req.headers.host), 'Cross-Origin-Opener-Policy': 'same-origin',
  }
}

export function dashboardRoutes(): Route[] {
  const files = new Map(Object.entries(FILES).map(([name, path]) => [name, { body: readFileSync(path), type: TYPES[path.slice(path.lastIndexOf('.') + 1)]! }]))
  const serve = (req: RestRequest): RestResponse => {
    const file = files.get(req.params[0] ?? '')
    if (file) return { status: 200, body: file.body, headers: headers(req, file.type) }
    const err = new HubError(404000, 'no such dashboard file')
    return { status: 404, body: errorBody(err), headers: { ...headers(req, 'application/json; charset=utf-8'), 'iothub-errorcode': err.codeName } }
  }
  return [
    // relative URLs in the page resolve against /dashboard/
    { method: 'get', pattern: /^\/dashboard$/, right: 'Anyone', handle: () => ({ status: 301, headers: { Location: '/dashboard/' } }) },
    { method: 'get', pattern: /^\/dashboard\/(.*)$/, right: 'Anyone', handle: serve },
  ]
}
