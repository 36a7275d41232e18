// CA certificates on the control plane, as ARM's `IotHubs/{hub}/certificates/{name}`: upload (PUT),
// read, list, generate a verification code, verify by proof of possession, delete. Changing one
// needs its etag (If-Match), as ARM does.
import type { CertificateAuthorities } from '../auth/certificate-authorities.js'
import { certificateJson } from '../auth/certificate-authorities.js'
import type { Route } from './http-server.js'

const CERTIFICATE = /^\/hyperhub\/certificates\/([^/]+)\/?$/

export function certificateRoutes(authorities: CertificateAuthorities): Route[] {
  const reply = (status: number, c: Parameters<typeof certificateJson>[0]) => ({ status, body: certificateJson(c), headers: { ETag: `"${c.etag}"` } })
  return [
    {
      method: 'get', pattern: /^\/hyperhub\/certificates\/?$/, right: 'ControlPlane',
      handle: () => ({ status: 200, body: { value: authorities.list().map(certificateJson) } }),
    },
    { method: 'get', pattern: CERTIFICATE, right: 'ControlPlane', handle: (req) => reply(200, authorities.get(req.params[0]!)) },
    {
      method: 'put', pattern: CERTIFICATE, right: 'ControlPlane',
      async handle(req) {
        const { cert, created } = await authorities.put(req.params[0]!, req.json(), req.headers['if-match'])
        return reply(created ? 201 : 200, cert)
      },
    },
    {
      method: 'post', pattern: /^\/hyperhub\/certificates\/([^/]+)\/generateVerificationCode\/?$/, right: 'ControlPlane',
      handle: async (req) => reply(200, await authorities.generateVerificationCode(req.params[0]!, req.headers['if-match'])),
    },
    {
      method: 'post', pattern: /^\/hyperhub\/certificates\/([^/]+)\/verify\/?$/, right: 'ControlPlane',
      handle: async (req) => reply(200, await authorities.verify(req.params[0]!, req.json(), req.headers['if-match'])),
    },
    {
      method: 'delete', pattern: CERTIFICATE, right: 'ControlPlane',
      async handle(req) {
        await authorities.delete(req.params[0]!, req.headers['if-match'])
        return { status: 204 }
      },
    },
  ]
}
