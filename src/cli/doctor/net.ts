/**
 * The doctor's network: HTTP(S) requests and TLS connections that never follow redirects, with curl's
 * `--connect-to` (check a proxy before DNS points at it), extra trust roots, a timeout, and one
 * classification of failures, because what a failure means decides the line:
 *
 * - offline: the name does not resolve, the network is unreachable, or nothing answers in time. This
 *   machine may simply have no route there (the doctor runs inside a private network, or offline), so the
 *   check is skipped, saying so, rather than failed.
 * - refused: the host answers but nothing listens on the port (a server or proxy not running).
 * - tls: the handshake failed or the certificate is not trusted: devices would refuse it as well.
 * - other: anything else (reset, malformed answer).
 */
import http from 'node:http'
import https from 'node:https'
import { isIP } from 'node:net'
import tls from 'node:tls'

/** `--connect-to HOST1:PORT1:HOST2:PORT2`: connections for HOST1:PORT1 go to HOST2:PORT2 (curl's syntax). */
export interface ConnectTo {
  host: string
  /** undefined: any port. */
  port?: number
  toHost: string
  /** undefined: the same port. */
  toPort?: number
}

export interface NetOptions {
  /** PEM trust roots added to Node's bundled ones (NODE_EXTRA_CA_CERTS does the same for a whole process). */
  ca?: string[]
  connectTo?: ConnectTo[]
  timeoutMs: number
}

export type NetworkFailure = 'offline' | 'refused' | 'tls' | 'other'

export class NetworkError extends Error {
  override name = 'NetworkError'
  constructor(
    readonly kind: NetworkFailure,
    /** The socket or TLS error code (ENOTFOUND, CERT_HAS_EXPIRED, ...) or `timeout`. */
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

const OFFLINE = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'ENETUNREACH', 'EHOSTUNREACH', 'ETIMEDOUT', 'ENETDOWN', 'timeout'])

/** Sorts a socket or TLS error into a NetworkError naming `where`. */
export function classifyNetworkError(err: unknown, where: string): NetworkError {
  if (err instanceof NetworkError) return err
  const e = err as NodeJS.ErrnoException & { reason?: string }
  const code = e.code ?? 'unknown'
  if (OFFLINE.has(code)) return new NetworkError('offline', code, `cannot reach ${where} from this machine (${code})`, { cause: err })
  if (code === 'ECONNREFUSED') return new NetworkError('refused', code, `nothing answers at ${where} (connection refused)`, { cause: err })
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER') return new NetworkError('tls', code, `${where} does not answer with TLS (a plain-http port?)`, { cause: err })
  // Certificate problems carry OpenSSL's verify code (CERT_HAS_EXPIRED, DEPTH_ZERO_SELF_SIGNED_CERT, ...);
  // handshake refusals ERR_SSL_* codes; a wrong host name ERR_TLS_CERT_ALTNAME_INVALID.
  if (/^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|EPROTO$)/.test(code)) {
    return new NetworkError('tls', code, `TLS with ${where} failed: ${e.reason ?? e.message} (${code})`, { cause: err })
  }
  return new NetworkError('other', code, `${where}: ${e.message}`, { cause: err })
}

/** Where a connection for `url` really goes: the URL's host and port, unless --connect-to says otherwise. */
export function destination(url: URL, net: NetOptions): { host: string; port: number; servername?: string } {
  const hostname = url.hostname.replace(/^\[|\]$/g, '')
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80
  const rule = net.connectTo?.find((r) => r.host.toLowerCase() === hostname.toLowerCase() && (r.port === undefined || r.port === port))
  // SNI and the certificate's name check use the URL's host, wherever the connection goes.
  const servername = isIP(hostname) ? undefined : hostname
  return { host: rule?.toHost ?? hostname, port: rule?.toPort ?? port, servername }
}

export function tlsOptions(net: NetOptions): { ca?: string[] } {
  return net.ca?.length ? { ca: [...tls.rootCertificates, ...net.ca] } : {}
}

export interface HttpAnswer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

export interface HttpRequest {
  method?: string
  headers?: Record<string, string>
  body?: string | Buffer
}

/** Bodies larger than this are cut: discovery documents and JSON answers are small. */
const MAX_BODY = 1024 * 1024

/** One request, no redirects followed. Rejects with a NetworkError. */
export function request(url: string, net: NetOptions, init: HttpRequest = {}): Promise<HttpAnswer> {
  const u = new URL(url)
  const to = destination(u, net)
  const where = `${u.host}${to.host !== u.hostname ? ` (via ${to.host}:${to.port})` : ''}`
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions = {
      host: to.host,
      port: to.port,
      method: init.method ?? 'GET',
      path: `${u.pathname}${u.search}`,
      headers: { host: u.host, 'user-agent': 'byod-mdm-doctor', ...init.headers },
      timeout: net.timeoutMs,
      agent: false,
      ...(u.protocol === 'https:' ? { servername: to.servername, ...tlsOptions(net) } : {}),
    }
    const req = (u.protocol === 'https:' ? https : http).request(options, (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size <= MAX_BODY) chunks.push(chunk)
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', (err) => reject(classifyNetworkError(err, where)))
    })
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${net.timeoutMs} ms`), { code: 'timeout' })))
    req.on('error', (err) => reject(classifyNetworkError(err, where)))
    req.end(init.body)
  })
}

/**
 * `request` as a Fetch API function, for openid-client (its `customFetch`). Network failures reject like
 * fetch does, a TypeError whose cause has the code, so the OIDC client classifies them as usual.
 */
export function fetchVia(net: NetOptions): (url: string, options: { method: string; headers: Record<string, string>; body?: unknown }) => Promise<Response> {
  return async (url, options) => {
    let body: string | Buffer | undefined
    if (typeof options.body === 'string') body = options.body
    else if (options.body instanceof URLSearchParams) body = options.body.toString()
    else if (options.body instanceof Uint8Array || options.body instanceof ArrayBuffer) body = Buffer.from(options.body as Uint8Array)
    else if (options.body !== undefined && options.body !== null) throw new TypeError('unsupported request body')
    try {
      const answer = await request(url, net, { method: options.method, headers: options.headers, body })
      const headers = new Headers()
      for (const [name, value] of Object.entries(answer.headers)) {
        for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, v)
      }
      const nullBody = answer.status === 204 || answer.status === 304 || options.method === 'HEAD'
      return new Response(nullBody ? null : new Uint8Array(answer.body), { status: answer.status, headers })
    } catch (err) {
      throw new TypeError('fetch failed', { cause: err })
    }
  }
}

/** Parses `HOST1:PORT1:HOST2:PORT2` (either port may be empty; IPv6 hosts in brackets). */
export function parseConnectTo(value: string): ConnectTo {
  const m = /^(\[[^\]]+\]|[^:[\]]+):(\d*):(\[[^\]]+\]|[^:[\]]+):(\d*)$/.exec(value)
  if (!m) throw new Error(`--connect-to ${value}: expected HOST1:PORT1:HOST2:PORT2, e.g. example.com:443:127.0.0.1:8443`)
  const port = (p: string) => {
    if (p === '') return undefined
    const n = Number(p)
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`--connect-to ${value}: ${p} is not a port`)
    return n
  }
  const unbracket = (h: string) => h.replace(/^\[|\]$/g, '')
  return { host: unbracket(m[1]!), port: port(m[2]!), toHost: unbracket(m[3]!), toPort: port(m[4]!) }
}
