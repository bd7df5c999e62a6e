/**
 * A client of Apple's Device Assignment Services (`https://mdmenrollment.apple.com`, ABM_API_URL) with the
 * session handling of Apple's "Authenticating for Automated Device Enrollment":
 *
 * - `GET /session` signed with OAuth 1.0a (oauth1.ts) answers `{"auth_session_token": "..."}`;
 * - every other call carries it as `X-ADM-Auth-Session` (and `X-Server-Protocol-Version`);
 * - "If the request doesn't have a valid X-ADM-Auth-Session header, or the auth token has expired, the
 *   server returns an HTTP 401": the client then asks for a new session and sends the call once more;
 * - "The Automated Device Enrollment service periodically issues a new X-ADM-Auth-Session in its response
 *   to other service calls. Use this new header value in subsequent calls."
 *
 * As micromdm/nanodep's transport does, a 403 whose body says `FORBIDDEN` (what the depsim simulator
 * answers for a session it no longer knows) is also treated as an expired session; Apple's documented
 * 403s (`ACCESS_DENIED`, `T_C_NOT_SIGNED`) are not. The session lives in this process only (nanodep keeps
 * it in memory too by default): each server process gets its own.
 */
import { oauthAuthorization, type OAuthCredentials } from './oauth1.js'

/** Protocol version 3 gives GET /account its org_id, org_type and urls (Apple, "AccountDetail"). */
export const SERVER_PROTOCOL_VERSION = '3'

const JSON_TYPE = 'application/json;charset=UTF8'

/**
 * Assign, Fetch and Remove Account-Driven Enrollment Service Discovery (Device Assignment Services 5.1):
 * POST, GET and DELETE on this path of https://mdmenrollment.apple.com.
 */
export const DISCOVERY_PATH = '/account-driven-enrollment/profile'
const MAX_RESPONSE_BYTES = 1024 * 1024

/** What Get Account Detail answers (Apple, "AccountDetail"); every key optional. */
export interface AccountDetail {
  server_name?: string
  server_uuid?: string
  admin_id?: string
  facilitator_id?: string
  org_name?: string
  org_email?: string
  org_phone?: string
  org_address?: string
  org_id?: string
  org_id_hash?: string
  org_type?: string
  org_version?: string
  urls?: unknown[]
}

/** Fetch Account-Driven Enrollment Service Discovery (GetAccountDrivenEnrollmentProfileResponse). */
export interface DiscoveryProfile {
  mdm_service_discovery_url?: string
  last_updated_timestamp?: string
}

/**
 * A failed call: `status` undefined when ABM could not be reached (network, timeout), else ABM's status
 * with the error code its body names (Apple answers codes such as `NOT_FOUND`, `ORG_NOT_SUPPORTED`,
 * `MDM_SERVICE_DISCOVERY_URL_NOT_VALID`, `T_C_NOT_SIGNED`, `ACCESS_DENIED`).
 */
export class AbmApiError extends Error {
  constructor(
    readonly path: string,
    readonly status: number | undefined,
    readonly appleCode: string | undefined,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options)
    this.name = 'AbmApiError'
  }
}

export interface AbmClientOptions {
  /** ABM_API_URL, without a trailing slash. */
  baseUrl: string
  credentials: OAuthCredentials
  fetch?: typeof fetch
  timeoutMs?: number
}

export interface AbmResponse<T> {
  status: number
  body: T
}

export class AbmClient {
  private session: string | undefined
  /** How many sessions this client obtained (tests and logs). */
  sessionsStarted = 0
  private readonly fetch: typeof fetch
  private readonly timeoutMs: number

  constructor(private readonly options: AbmClientOptions) {
    this.fetch = options.fetch ?? fetch
    this.timeoutMs = options.timeoutMs ?? 30_000
  }

  /** GET /session: a new X-ADM-Auth-Session. Throws AbmApiError (401: ABM refused the server token). */
  async startSession(): Promise<string> {
    const url = `${this.options.baseUrl}/session`
    const res = await this.send('/session', url, {
      method: 'GET',
      headers: { authorization: oauthAuthorization({ method: 'GET', url, credentials: this.options.credentials }), 'x-server-protocol-version': SERVER_PROTOCOL_VERSION },
    })
    const text = await readBody('/session', res)
    if (res.status !== 200) throw apiError('/session', res.status, text)
    let token: unknown
    try {
      token = (JSON.parse(text) as { auth_session_token?: unknown }).auth_session_token
    } catch {
      token = undefined
    }
    if (typeof token !== 'string' || !/^[\x21-\x7e]{1,4096}$/.test(token)) throw new AbmApiError('/session', res.status, undefined, 'ABM answered /session without an auth_session_token')
    this.session = token
    this.sessionsStarted++
    return token
  }

  /** One call with the session, renewed once when ABM says it expired. Non-2xx answers throw AbmApiError. */
  async request<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<AbmResponse<T>> {
    const session = this.session ?? (await this.startSession())
    let res = await this.call(method, path, session, body)
    let text = await readBody(path, res)
    if (sessionExpired(res.status, text)) {
      res = await this.call(method, path, await this.startSession(), body)
      text = await readBody(path, res)
    }
    const renewed = res.headers.get('x-adm-auth-session')
    if (renewed && /^[\x21-\x7e]{1,4096}$/.test(renewed)) this.session = renewed
    if (res.status < 200 || res.status > 299) throw apiError(path, res.status, text)
    let parsed: unknown = {}
    if (text.trim()) {
      try {
        parsed = JSON.parse(text)
      } catch (err) {
        throw new AbmApiError(path, res.status, undefined, `ABM answered ${path} with a body that is not JSON`, { cause: err })
      }
    }
    return { status: res.status, body: parsed as T }
  }

  /** Get Account Detail: `GET /account`. */
  async account(): Promise<AccountDetail> {
    return (await this.request<AccountDetail>('GET', '/account')).body
  }

  /** Fetch Account-Driven Enrollment Service Discovery: `GET /account-driven-enrollment/profile` (404 NOT_FOUND: none). */
  async fetchDiscovery(): Promise<DiscoveryProfile> {
    return (await this.request<DiscoveryProfile>('GET', DISCOVERY_PATH)).body
  }

  /** Assign Account-Driven Enrollment Service Discovery: `POST /account-driven-enrollment/profile` `{"mdm_service_discovery_url": ...}`. */
  async assignDiscovery(url: string): Promise<void> {
    await this.request('POST', DISCOVERY_PATH, { mdm_service_discovery_url: url })
  }

  /** Remove Account-Driven Enrollment Profile: `DELETE /account-driven-enrollment/profile`. */
  async removeDiscovery(): Promise<void> {
    await this.request('DELETE', DISCOVERY_PATH)
  }

  private call(method: string, path: string, session: string, body: unknown): Promise<Response> {
    const headers: Record<string, string> = { 'x-adm-auth-session': session, 'x-server-protocol-version': SERVER_PROTOCOL_VERSION, accept: JSON_TYPE }
    if (body !== undefined) headers['content-type'] = JSON_TYPE
    return this.send(path, `${this.options.baseUrl}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
  }

  private async send(path: string, url: string, init: RequestInit): Promise<Response> {
    try {
      return await this.fetch(url, { ...init, redirect: 'error', signal: AbortSignal.timeout(this.timeoutMs) })
    } catch (err) {
      throw new AbmApiError(path, undefined, undefined, `Apple Business Manager (${new URL(url).origin}) cannot be reached: ${(err as Error).message}`, { cause: err })
    }
  }
}

function sessionExpired(status: number, body: string): boolean {
  return status === 401 || (status === 403 && /\bFORBIDDEN\b/.test(body))
}

async function readBody(path: string, res: Response): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0')
  if (declared > MAX_RESPONSE_BYTES) throw new AbmApiError(path, res.status, undefined, `ABM answered ${path} with ${declared} bytes`)
  const bytes = Buffer.from(await res.arrayBuffer())
  if (bytes.length > MAX_RESPONSE_BYTES) throw new AbmApiError(path, res.status, undefined, `ABM answered ${path} with ${bytes.length} bytes`)
  return bytes.toString('utf8')
}

/** The error code in an ABM error body (`NOT_FOUND`, `"NOT_FOUND"`, `{"code": "NOT_FOUND"}`, `token_expired`, ...). */
export function appleErrorCode(body: string): string | undefined {
  return /\b([A-Z][A-Z0-9_]{2,}|token_expired|unauthorized)\b/.exec(body.slice(0, 2048))?.[1]
}

function apiError(path: string, status: number, body: string): AbmApiError {
  const code = appleErrorCode(body)
  return new AbmApiError(path, status, code, `ABM answered ${path} with ${status}${code ? ` ${code}` : ''}`)
}
