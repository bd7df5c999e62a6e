/**
 * A small OpenID issuer on 127.0.0.1 whose token endpoint answers with ID tokens the test crafts: wrong
 * issuer, wrong audience, expired, `alg: none`, HS256, a key outside its JWKS. It is a test peer playing a
 * broken or hostile IdP (oidc-provider cannot be made to misbehave like that), not a stand-in for our code:
 * discovery, client authentication, JWKS and the token response are real HTTP that openid-client handles.
 */
import { createHmac, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface CraftOptions {
  alg?: 'RS256' | 'HS256' | 'none'
  /** Sign with this key instead of the one published in the JWKS. */
  key?: KeyObject
  /** HS256 secret (default: the client secret, the classic confusion). */
  hmacSecret?: string
}

export type TokenAnswer = { status: number; body: unknown; headers?: Record<string, string> }

export interface FakeIssuer {
  issuer: string
  clientId: string
  clientSecret: string
  /** Claims every ID token gets unless a test overrides them. */
  baseClaims(): Record<string, unknown>
  signIdToken(claims: Record<string, unknown>, options?: CraftOptions): string
  /** The next token endpoint answer for `code`; codes are single use. */
  issueCode(answer: TokenAnswer | (() => TokenAnswer)): string
  /** A normal successful answer carrying `idToken`. */
  ok(idToken: string | undefined, extra?: Record<string, unknown>): TokenAnswer
  /** Token requests received: grant type, code and redirect_uri as sent, and whether client auth was right. */
  requests: { grantType?: string; code?: string; redirectUri?: string; authenticated: boolean }[]
  /** Advertised in discovery. */
  metadata: Record<string, unknown>
  close(): Promise<void>
}

export async function startFakeIssuer(options: { clientId?: string; algs?: string[] } = {}): Promise<FakeIssuer> {
  const clientId = options.clientId ?? 'byod-mdm'
  const clientSecret = randomBytes(24).toString('base64url')
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const kid = 'fake-rs256'
  const codes = new Map<string, TokenAnswer | (() => TokenAnswer)>()
  const requests: FakeIssuer['requests'] = []
  const metadata: Record<string, unknown> = {}

  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
      res.end(JSON.stringify(body))
    }
    const url = new URL(req.url ?? '/', 'http://x')
    if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration') return send(200, metadata)
    if (req.method === 'GET' && url.pathname === '/jwks') return send(200, { keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' }] })
    if (req.method === 'POST' && url.pathname === '/token') {
      let body = ''
      req.setEncoding('utf8')
      req.on('data', (c: string) => (body += c))
      req.on('end', () => {
        const form = new URLSearchParams(body)
        const authenticated = basicCredentials(req.headers.authorization) === `${clientId}:${clientSecret}`
        requests.push({ grantType: form.get('grant_type') ?? undefined, code: form.get('code') ?? undefined, redirectUri: form.get('redirect_uri') ?? undefined, authenticated })
        if (!authenticated) return send(401, { error: 'invalid_client' })
        const code = form.get('code') ?? ''
        const answer = codes.get(code)
        codes.delete(code)
        if (!answer) return send(400, { error: 'invalid_grant', error_description: 'unknown or used code' })
        const { status, body: out, headers } = typeof answer === 'function' ? answer() : answer
        return send(status, out, headers)
      })
      return
    }
    send(404, { error: 'not_found' })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  Object.assign(metadata, {
    issuer,
    authorization_endpoint: `${issuer}/authorize`,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
    response_types_supported: ['code'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: options.algs ?? ['RS256'],
    token_endpoint_auth_methods_supported: ['client_secret_basic'],
  })

  const fake: FakeIssuer = {
    issuer,
    clientId,
    clientSecret,
    requests,
    metadata,
    baseClaims() {
      const now = Math.floor(Date.now() / 1000)
      return { iss: issuer, aud: clientId, sub: 'carol-sub', iat: now, exp: now + 300, email: 'carol@example.com', name: 'Carol', groups: ['staff'] }
    },
    signIdToken(claims, o = {}) {
      const alg = o.alg ?? 'RS256'
      const header = Buffer.from(JSON.stringify(alg === 'none' ? { alg, typ: 'JWT' } : { alg, kid, typ: 'JWT' })).toString('base64url')
      const payload = Buffer.from(JSON.stringify(claims)).toString('base64url')
      const input = `${header}.${payload}`
      if (alg === 'none') return `${input}.`
      if (alg === 'HS256') return `${input}.${createHmac('sha256', o.hmacSecret ?? clientSecret).update(input).digest('base64url')}`
      return `${input}.${sign('sha256', Buffer.from(input), o.key ?? privateKey).toString('base64url')}`
    },
    issueCode(answer) {
      const code = randomBytes(16).toString('base64url')
      codes.set(code, answer)
      return code
    },
    ok(idToken, extra = {}) {
      return { status: 200, body: { access_token: randomBytes(16).toString('base64url'), token_type: 'Bearer', expires_in: 300, ...(idToken ? { id_token: idToken } : {}), ...extra } }
    },
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return fake
}

/** RFC 6749 section 2.3.1: form-encoded client id and secret, joined by a colon, base64. */
function basicCredentials(header: string | undefined): string | undefined {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? '')
  if (!m) return undefined
  const [id, secret] = Buffer.from(m[1]!, 'base64').toString('utf8').split(':')
  const decode = (s = '') => decodeURIComponent(s.replace(/\+/g, ' '))
  return `${decode(id)}:${decode(secret)}`
}
