// The login page: a shared access policy's connection string (tokens are made in this tab) or a
// bearer token (role-based access, e.g. from `npm run -s token -- --role "IoT Hub Data Contributor"`).
import { logIn, takeRefusal } from './api.js'
import { field, h, say } from './dom.js'
import { parseConnectionString } from './sas.js'

export function render(main) {
  document.title = 'Hyperhub · log in'
  const status = h('p', { class: 'status', id: 'login-status', role: 'alert' })
  const refused = takeRefusal()
  if (refused) say(status, refused, 'error')
  const connectionString = h('textarea', {
    id: 'connection-string', rows: 3, spellcheck: 'false', autocomplete: 'off',
    placeholder: 'HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=…',
  })
  const bearer = h('textarea', { id: 'bearer-token', rows: 3, spellcheck: 'false', autocomplete: 'off', placeholder: 'eyJhbGciOi…' })
  const done = () => {
    if (location.hash === '#/devices') window.dispatchEvent(new HashChangeEvent('hashchange'))
    else location.hash = '#/devices'
  }
  const sasForm = h('form', {
    id: 'login-sas',
    onsubmit: (e) => {
      e.preventDefault()
      try {
        logIn({ kind: 'sas', ...parseConnectionString(connectionString.value) })
        connectionString.value = ''
        done()
      } catch (err) {
        say(status, err.message, 'error')
      }
    },
  },
  h('h2', {}, 'Shared access policy'),
  field('Connection string', connectionString),
  h('p', { class: 'hint' }, 'The key stays in this tab (session storage): the page signs each request itself. ',
    'iothubowner can use every page. service queries devices, edits twins, invokes methods, sends messages, follows telemetry and reads metrics, ',
    'but cannot create or delete devices, nor read the tier and routes. registryRead lists devices; registryReadWrite also creates and deletes them. ',
    'A page shows the hub\'s refusal for what the policy cannot do.'),
  h('button', { type: 'submit', id: 'login-sas-submit' }, 'Log in'))
  const bearerForm = h('form', {
    id: 'login-bearer',
    onsubmit: (e) => {
      e.preventDefault()
      const token = bearer.value.trim().replace(/^Bearer\s+/i, '')
      if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) return say(status, 'a bearer token is a JWT: three base64url parts separated by dots', 'error')
      logIn({ kind: 'bearer', token })
      bearer.value = ''
      done()
    },
  },
  h('h2', {}, 'Bearer token (roles)'),
  field('Token', bearer),
  h('p', { class: 'hint' }, 'From ', h('code', {}, 'npm run -s token -- --role "IoT Hub Data Contributor"'),
    ' or your identity provider; a role allows what Azure\'s does (IoT Hub Registry Contributor: devices, not twins; Owner: the routes and the tier). ',
    'The event stream takes shared access signatures only, so live telemetry needs a policy login.'),
  h('button', { type: 'submit', id: 'login-bearer-submit' }, 'Log in'))
  main.append(h('section', { class: 'login' }, h('h1', {}, 'Log in to Hyperhub'), status, h('div', { class: 'cards' }, h('div', { class: 'card' }, sasForm), h('div', { class: 'card' }, bearerForm))))
}
