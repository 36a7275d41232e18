// The dashboard's shell: a hash router (#/devices, #/device/<id>, #/hub, #/routes) and the
// navigation bar. Each page's render returns a function that stops what it started (sockets, polls),
// called when the page is left.
import { currentSession, logOut, onLoggedOut } from './api.js'
import { h } from './dom.js'
import * as login from './login.js'
import * as devices from './devices.js'
import * as device from './device.js'
import * as hub from './hub.js'
import * as routes from './routes.js'

const PAGES = { devices, device, hub, routes }
const root = document.getElementById('app')
let leave

function nav(active) {
  const s = currentSession()
  const link = (page, label) => h('a', { href: `#/${page}`, class: active === page ? 'active' : '', id: `nav-${page}` }, label)
  return h('header', { class: 'top' },
    h('span', { class: 'brand' }, 'Hyperhub'),
    h('nav', {}, link('devices', 'Devices'), link('hub', 'Hub'), link('routes', 'Routes')),
    h('span', { class: 'who' }, s.kind === 'sas' ? `${s.keyName} @ ${s.hostName}` : 'bearer token'),
    h('button', { type: 'button', id: 'logout', class: 'secondary', onclick: () => logOut() }, 'Log out'))
}

function render() {
  if (leave) { try { leave() } catch { /* a page that failed to stop must not block the next */ } }
  leave = undefined
  root.replaceChildren()
  const main = h('main')
  if (!currentSession()) {
    root.append(main)
    return login.render(main)
  }
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/')
  const page = PAGES[name]
  if (!page) { location.replace('#/devices'); return }
  let arg
  try { arg = decodeURIComponent(rest.join('/')) } catch { arg = rest.join('/') }
  root.append(nav(name === 'device' ? 'devices' : name), main)
  leave = page.render(main, arg)
}

// a reload leaves nothing of the old session in memory (a cached token, the pages' state)
onLoggedOut(() => {
  history.replaceState(null, '', '#/login')
  location.reload()
})
window.addEventListener('hashchange', render)
render()
