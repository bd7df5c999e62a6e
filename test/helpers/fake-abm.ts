/**
 * An in-process Apple Business Manager (Device Assignment Services) on 127.0.0.1, behaving as Apple
 * documents ("Authenticating for Automated Device Enrollment", "Examining server tokens", "Interpreting
 * Automated Device Enrollment error codes", "AccountDetail", "Assign/Fetch/Remove Account-Driven
 * Enrollment Service Discovery"):
 *
 * - `serverTokenFile()`: the `.p7m` ABM downloads for an MDM server, an S/MIME EnvelopedData encrypted to
 *   the certificate that was uploaded ("Upload Public Key"), made with node-forge (or `openssl smime
 *   -encrypt`), never with the code under test; its content is the token JSON between BEGIN/END MESSAGE;
 * - `GET /session`: verifies the OAuth 1.0a HMAC-SHA1 signature by recomputing the base string with its
 *   own code (not src/abm/oauth1.ts), the consumer key and token, a fresh timestamp and an unused nonce;
 *   400 for missing or unsupported OAuth parameters, 401 otherwise, as Apple's error-code page lists;
 *   answers `{"auth_session_token": ...}`;
 * - every other path needs a live `X-ADM-Auth-Session` (401 `token_expired` once `expireSessions()` ran,
 *   401 `unauthorized` for an unknown one); can hand out a new session in a response header, as Apple
 *   "periodically" does;
 * - `GET /account`, and the account-driven enrollment profile (POST stores the URL, GET answers it or
 *   404 NOT_FOUND, DELETE removes it), with Apple's 400 codes.
 *
 * One deviation: Apple accepts only https discovery URLs; the fake also accepts http on a loopback host,
 * so that a test server without TLS can be registered.
 */
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import forge from 'node-forge'
import { openssl } from './openssl.js'

export interface FakeTokenJson {
  consumer_key: string
  consumer_secret: string
  access_token: string
  access_secret: string
  access_token_expiry: string
}

export interface FakeAbmRequest {
  method: string
  path: string
  session?: string
  status: number
  /** For /session: why the fake refused it. */
  refused?: string
}

export interface TokenFileOptions {
  /** Encrypt to this certificate (PEM) instead of the uploaded one. */
  certificatePem?: string
  /** Build the envelope with `openssl smime -encrypt` instead of node-forge. */
  openssl?: boolean
  /** A token of other credentials (another MDM server). */
  token?: Partial<FakeTokenJson>
}

export interface FakeAbm {
  url: string
  account: Record<string, unknown>
  token: FakeTokenJson
  requests: FakeAbmRequest[]
  /** The registered account-driven enrollment service discovery URL. */
  discovery: { url: string; updatedAt: string } | null
  sessionsIssued: number
  /** "Upload Public Key": the certificate ABM encrypts the server token to. */
  uploadCertificate(pem: string): void
  /** "Download Token": the .p7m file. */
  serverTokenFile(options?: TokenFileOptions): string
  /** Every session issued so far expires (the next call with one gets 401 token_expired). */
  expireSessions(): void
  /** The next authenticated response carries a new X-ADM-Auth-Session, which replaces the old one. */
  rotateSessionInNextResponse(): void
  close(): Promise<void>
}

/** RFC 3986 unreserved characters kept, everything else %XX: written independently of src/abm/oauth1.ts. */
function rfc3986(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/** `OAuth realm="ADM", k="v", ...` into a map (values percent-decoded); undefined when malformed or duplicated. */
function parseOAuthHeader(header: string | undefined): Map<string, string> | undefined {
  if (!header?.startsWith('OAuth ')) return undefined
  const params = new Map<string, string>()
  for (const part of header.slice(6).split(',')) {
    const m = /^\s*([A-Za-z_]+)="([^"]*)"\s*$/.exec(part)
    if (!m) return undefined
    if (params.has(m[1]!)) return undefined
    params.set(m[1]!, decodeURIComponent(m[2]!))
  }
  return params
}

function wrap76(b64: string): string {
  return b64.replace(/(.{76})/g, '$1\n').trim()
}

export async function startFakeAbm(options: { account?: Record<string, unknown>; tokenLifetimeDays?: number } = {}): Promise<FakeAbm> {
  const serverUuid = randomUUID().toUpperCase()
  const account: Record<string, unknown> = {
    server_name: 'byod-mdm test server',
    server_uuid: serverUuid,
    admin_id: 'admin@example.com',
    facilitator_id: 'admin@example.com',
    org_name: 'Example Corp',
    org_email: 'it@example.com',
    org_phone: '+1 555 0100',
    org_address: '1 Infinite Loop, Cupertino',
    org_id: '780420',
    org_id_hash: 'f6e1e81a93837e1e87d6f4d99e235117f12ccc0b567bd0e7c126d7f28395d3d3',
    org_type: 'org',
    org_version: 'v2',
    urls: [
      { uri: '/session', http_method: ['GET'] },
      { uri: '/account-driven-enrollment/profile', http_method: ['DELETE', 'POST', 'GET'] },
    ],
    ...options.account,
  }
  const token: FakeTokenJson = {
    consumer_key: `CK_${randomBytes(24).toString('hex')}`,
    consumer_secret: `CS_${randomBytes(20).toString('hex')}`,
    access_token: `AT_O${randomBytes(16).toString('hex')}O${Date.now()}`,
    access_secret: `AS_${randomBytes(20).toString('hex')}`,
    access_token_expiry: new Date(Date.now() + (options.tokenLifetimeDays ?? 365) * 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
  }
  const sessions = new Map<string, { expired: boolean }>()
  const nonces = new Set<string>()
  let certificatePem: string | undefined
  let rotate = false
  let baseUrl = ''

  const fake: FakeAbm = {
    url: '',
    account,
    token,
    requests: [],
    discovery: null,
    sessionsIssued: 0,
    uploadCertificate(pem) {
      certificatePem = pem
    },
    serverTokenFile(opts = {}) {
      const pem = opts.certificatePem ?? certificatePem
      if (!pem) throw new Error('no certificate uploaded to the fake ABM')
      const json = JSON.stringify({ ...token, ...opts.token })
      const inner = `Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n-----BEGIN MESSAGE-----\r\n${json}\r\n-----END MESSAGE-----\r\n`
      if (opts.openssl) {
        const o = openssl()
        try {
          return o.run(['smime', '-encrypt', '-aes128', '-binary', '-in', o.file('token.txt', inner), o.file('recipient.pem', pem)]).toString('latin1')
        } finally {
          o.close()
        }
      }
      const p7 = forge.pkcs7.createEnvelopedData()
      p7.addRecipient(forge.pki.certificateFromPem(pem))
      p7.content = forge.util.createBuffer(inner, 'utf8')
      p7.encrypt(undefined, forge.pki.oids['aes128-CBC'])
      const der = forge.asn1.toDer(p7.toAsn1()).getBytes()
      return [
        'Content-Type: application/pkcs7-mime; name="smime.p7m"; smime-type=enveloped-data',
        'Content-Transfer-Encoding: base64',
        'Content-Disposition: attachment; filename="smime.p7m"',
        'Content-Description: S/MIME Encrypted Message',
        '',
        wrap76(Buffer.from(der, 'binary').toString('base64')),
        '',
      ].join('\n')
    },
    expireSessions() {
      for (const s of sessions.values()) s.expired = true
    },
    rotateSessionInNextResponse() {
      rotate = true
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }

  const newSession = () => {
    const value = `${Date.now()}O${randomBytes(24).toString('hex').toUpperCase()}`
    sessions.set(value, { expired: false })
    fake.sessionsIssued++
    return value
  }

  /** Apple's checks of the /session request; a refusal: [status, reason]. */
  function checkOAuth(req: http.IncomingMessage, path: string): [number, string] | undefined {
    const p = parseOAuthHeader(req.headers.authorization)
    if (!p) return [400, 'missing or malformed OAuth Authorization header']
    for (const k of ['oauth_consumer_key', 'oauth_token', 'oauth_signature_method', 'oauth_signature', 'oauth_timestamp', 'oauth_nonce']) {
      if (!p.has(k)) return [400, `missing ${k}`]
    }
    if (p.get('oauth_signature_method') !== 'HMAC-SHA1') return [400, 'unsupported signature method']
    if (p.has('oauth_version') && p.get('oauth_version') !== '1.0') return [400, 'unsupported oauth_version']
    if (p.get('oauth_consumer_key') !== token.consumer_key) return [401, 'invalid consumer key']
    if (p.get('oauth_token') !== token.access_token) return [401, 'invalid token']
    if (new Date(token.access_token_expiry).getTime() <= Date.now()) return [401, 'expired token']
    const ts = Number(p.get('oauth_timestamp'))
    if (!Number.isInteger(ts) || Math.abs(ts - Date.now() / 1000) > 300) return [401, 'timestamp out of range']
    const nonceKey = `${ts}:${p.get('oauth_nonce')}`
    if (nonces.has(nonceKey)) return [401, 'nonce already used']
    // The signature base string, computed here from the request as received.
    const url = new URL(path, baseUrl)
    const pairs: string[][] = []
    for (const [k, v] of p) if (k !== 'realm' && k !== 'oauth_signature') pairs.push([rfc3986(k), rfc3986(v)])
    for (const [k, v] of url.searchParams) pairs.push([rfc3986(k), rfc3986(v)])
    pairs.sort((a, b) => (a[0] === b[0] ? (a[1]! < b[1]! ? -1 : 1) : a[0]! < b[0]! ? -1 : 1))
    const base = `${req.method}&${rfc3986(`${url.origin}${url.pathname}`)}&${rfc3986(pairs.map((x) => x.join('=')).join('&'))}`
    const expected = createHmac('sha1', `${rfc3986(token.consumer_secret)}&${rfc3986(token.access_secret)}`).update(base).digest()
    const given = Buffer.from(p.get('oauth_signature')!, 'base64')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return [401, 'invalid signature']
    nonces.add(nonceKey)
    return undefined
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const path = req.url ?? '/'
      const pathname = path.split('?')[0]!
      const record: FakeAbmRequest = { method: req.method ?? '', path: pathname, status: 0 }
      fake.requests.push(record)
      const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        record.status = status
        const text = typeof body === 'string' ? body : JSON.stringify(body)
        res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json;charset=UTF8', ...headers })
        res.end(text)
      }
      if (pathname === '/session') {
        if (req.method !== 'GET') return send(405, 'METHOD_NOT_ALLOWED')
        const refusal = checkOAuth(req, path)
        if (refusal) {
          record.refused = refusal[1]
          return send(refusal[0], refusal[0] === 400 ? 'BAD_REQUEST' : 'UNAUTHORIZED')
        }
        return send(200, { auth_session_token: newSession() })
      }
      const session = req.headers['x-adm-auth-session']
      record.session = typeof session === 'string' ? session : undefined
      const known = record.session ? sessions.get(record.session) : undefined
      if (!known) return send(401, 'unauthorized')
      if (known.expired) return send(401, 'token_expired')
      const extra: Record<string, string> = {}
      if (rotate) {
        rotate = false
        known.expired = true
        extra['x-adm-auth-session'] = newSession()
      }
      if (pathname === '/account' && req.method === 'GET') return send(200, account, extra)
      if (pathname === '/account-driven-enrollment/profile') {
        if (req.method === 'GET') {
          return fake.discovery ? send(200, { mdm_service_discovery_url: fake.discovery.url, last_updated_timestamp: fake.discovery.updatedAt }, extra) : send(404, 'NOT_FOUND', extra)
        }
        if (req.method === 'DELETE') {
          fake.discovery = null
          return send(200, {}, extra)
        }
        if (req.method === 'POST') {
          let body: { mdm_service_discovery_url?: unknown }
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body
          } catch {
            return send(400, 'MDM_SERVICE_DISCOVERY_URL_REQUIRED', extra)
          }
          const value = body.mdm_service_discovery_url
          if (typeof value !== 'string' || !value) return send(400, 'MDM_SERVICE_DISCOVERY_URL_REQUIRED', extra)
          let url: URL
          try {
            url = new URL(value)
          } catch {
            return send(400, 'MDM_SERVICE_DISCOVERY_URL_NOT_VALID', extra)
          }
          const loopbackHttp = url.protocol === 'http:' && (url.hostname === '127.0.0.1' || url.hostname === 'localhost')
          if (url.protocol !== 'https:' && !loopbackHttp) return send(400, 'MDM_SERVICE_DISCOVERY_URL_NOT_VALID', extra)
          fake.discovery = { url: value, updatedAt: new Date().toISOString() }
          return send(200, {}, extra)
        }
      }
      return send(404, 'NOT_FOUND', extra)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  fake.url = baseUrl
  return fake
}
