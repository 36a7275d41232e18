// Runs before vitest: a CA every test hub reuses, so test processes can trust it through
// NODE_EXTRA_CA_CERTS (which Node reads only at start-up), as the official SDKs need.
import { ensureLocalPki } from '../../src/tls/local-pki.js'

const files = ensureLocalPki('.test-pki', ['localhost', '127.0.0.1'])
if (files.created) console.log(`test CA written to ${files.caCertFile}`)
