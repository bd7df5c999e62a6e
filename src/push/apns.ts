/**
 * Sends MDM wake-up pushes to APNs over HTTP/2 with certificate authentication (Apple, "Sending
 * notification requests to APNs",
 * https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns).
 *
 * Apple asks providers to keep one connection open and reuse it for many notifications rather than
 * connecting per push, so each client (one per push certificate) holds one HTTP/2 session and sends every
 * push as a stream on it. The session is replaced when it ends (GOAWAY, close, error) at the next send.
 * Responses are classified as Apple's "Handling notification responses from APNs" describes
 * (https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns).
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import { rootCertificates } from 'node:tls'

export const APNS_PRODUCTION_URL = 'https://api.push.apple.com'
export const APNS_SANDBOX_URL = 'https://api.sandbox.push.apple.com'

/** APNs stores a notification for an offline device for up to 30 days; by default an MDM push asks for all of them. */
const DEFAULT_EXPIRATION_MS = 30 * 24 * 3600 * 1000
const DEFAULT_TIMEOUT_MS = 10_000
/** APNs error bodies are a small JSON dictionary; anything longer is not worth reading. */
const MAX_BODY_BYTES = 4096

export interface ApnsClientOptions {
  /** `APNS_PRODUCTION_URL`, `APNS_SANDBOX_URL`, or a test server. */
  url: string
  /** The MDM push certificate and its key (see loadPushCredentials). */
  identity: { certPem: string; keyPem: string }
  /** Extra trust roots (PEM), added to Node's bundled ones: for tests. */
  ca?: string
  /** How long one push may take, connecting included, before it counts as failed (retryable). */
  timeoutMs?: number
}

export interface ApnsRequest {
  /** The device token, hex (TokenUpdate's `Token`). */
  token: string
  /** TokenUpdate's `PushMagic`. */
  pushMagic: string
  /** The push certificate's topic. */
  topic: string
  /** When APNs may drop the push if the device stays offline; default 30 days. `new Date(0)`: now or never. */
  expiration?: Date
  priority?: 5 | 10
}

/**
 * - delivered: APNs accepted the push (200).
 * - invalid_token: the token is dead (410, or 400 BadDeviceToken/DeviceTokenNotForTopic): stop pushing to it.
 * - retry: 429, 5xx, timeout or connection failure: try again later.
 * - config_error: the certificate or topic is wrong (403, topic errors, TLS rejection): no push can succeed.
 * - error: any other refusal (a malformed request): retrying will not help.
 */
export type ApnsOutcome = 'delivered' | 'invalid_token' | 'retry' | 'config_error' | 'error'

export interface ApnsResult {
  /** HTTP status, or 0 when no response arrived (refused locally, timeout, connection failure). */
  status: number
  apnsId?: string
  /**
   * Apple's `reason`, or for status 0 a local one: MalformedDeviceToken, InvalidRequest, Timeout,
   * ConnectionError, StreamRefused, TlsRejected.
   */
  reason?: string
  /** For 410: when APNs last confirmed the token was no longer valid (milliseconds since the epoch). */
  timestamp?: number
  /** For status 0: the underlying error message. */
  detail?: string
  outcome: ApnsOutcome
}

export interface RetryPolicy {
  /** Total tries, the first included. */
  attempts: number
  baseDelayMs: number
  maxDelayMs: number
}

/** Five tries over at most about 7.5 s: long enough to ride out a throttle or a server restart. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 500, maxDelayMs: 15_000 }

/** Even-length hex; APNs tokens are 32 bytes today, and Apple warns they may grow, so up to 100 bytes. */
const TOKEN = /^(?:[0-9a-fA-F]{2}){1,100}$/
/** Tries of one push that the server refused unprocessed (REFUSED_STREAM) before reporting `retry`. */
const MAX_REFUSED = 3
const REFUSED: ApnsResult = { status: 0, reason: 'StreamRefused', outcome: 'retry' }

export class ApnsClient {
  private session: ClientHttp2Session | undefined
  private probing = false
  private closed = false
  /** Sessions opened so far (for logs and tests). */
  sessionsOpened = 0

  constructor(private readonly options: ApnsClientOptions) {}

  async send(req: ApnsRequest): Promise<ApnsResult> {
    if (this.closed) throw new Error('ApnsClient is closed')
    // Refused here rather than by APNs: a malformed token can never become valid.
    if (!TOKEN.test(req.token)) return { status: 0, reason: 'MalformedDeviceToken', outcome: 'invalid_token' }
    const expiration = req.expiration ?? new Date(Date.now() + DEFAULT_EXPIRATION_MS)
    const headers: OutgoingHttpHeaders = {
      ':method': 'POST',
      ':path': `/3/device/${req.token.toLowerCase()}`,
      'apns-push-type': 'mdm',
      'apns-topic': req.topic,
      'apns-priority': String(req.priority ?? 10),
      'apns-expiration': String(Math.max(0, Math.floor(expiration.getTime() / 1000))),
      'content-type': 'application/json',
    }
    const body = JSON.stringify({ mdm: req.pushMagic })
    // REFUSED_STREAM means the server did not process the stream (RFC 9113 section 8.7), so it is resent
    // at once. It happens on a fresh connection when pushes go out before the server's SETTINGS (its
    // concurrent stream limit) arrive; afterwards nghttp2 queues streams beyond the limit itself.
    let result: ApnsResult
    for (let i = 0; i < MAX_REFUSED; i++) {
      result = await this.attempt(headers, body)
      if (result.reason !== 'StreamRefused') break
    }
    return result!
  }

  /** One request on the current session, within the timeout. */
  private attempt(headers: OutgoingHttpHeaders, body: string): Promise<ApnsResult> {
    let session: ClientHttp2Session
    let stream: ClientHttp2Stream
    try {
      session = this.currentSession()
      stream = session.request(headers)
    } catch (err) {
      // A header value Node refuses (a topic with a newline), or a session that ended just now.
      if ((err as { code?: unknown }).code === 'ERR_INVALID_CHAR') return Promise.resolve({ status: 0, reason: 'InvalidRequest', detail: (err as Error).message, outcome: 'error' })
      return Promise.resolve(transportFailure(err))
    }
    stream.end(body)
    return new Promise<ApnsResult>((resolve) => {
      let status = 0
      let responseHeaders: IncomingHttpHeaders = {}
      const chunks: Buffer[] = []
      let size = 0
      const timer = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL)
        this.probe(session)
        finish({ status: 0, reason: 'Timeout', outcome: 'retry' })
      }, this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS)
      let settled = false
      const finish = (result: ApnsResult) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve(result)
      }
      const refused = () => stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM && !status
      stream.on('response', (h) => {
        responseHeaders = h
        status = Number(h[':status'])
      })
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size <= MAX_BODY_BYTES) chunks.push(chunk)
      })
      stream.on('end', () => {
        if (status) finish(classify(status, responseHeaders, Buffer.concat(chunks)))
      })
      stream.on('error', (err) => finish(refused() ? REFUSED : transportFailure(err)))
      // Reset, or the connection closed, before a complete response: nothing says APNs took the push, so
      // it may be sent again.
      stream.on('close', () => finish(refused() ? REFUSED : { status: 0, reason: 'ConnectionError', detail: `stream closed (HTTP/2 code ${stream.rstCode})`, outcome: 'retry' }))
    })
  }

  /** `send`, repeated while the outcome is `retry`, with exponential backoff and full jitter. */
  async sendWithRetry(req: ApnsRequest, policy: RetryPolicy = DEFAULT_RETRY): Promise<ApnsResult & { attempts: number }> {
    for (let attempt = 1; ; attempt++) {
      const result = await this.send(req)
      if (result.outcome !== 'retry' || attempt >= policy.attempts) return { ...result, attempts: attempt }
      await sleep(backoffDelay(attempt, policy))
    }
  }

  /** Ends the session after in-flight pushes complete, or after the timeout if the peer stopped answering. */
  async close(): Promise<void> {
    this.closed = true
    const session = this.session
    this.session = undefined
    if (!session || session.destroyed) return
    const timer = setTimeout(() => session.destroy(), this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS)
    await new Promise<void>((resolve) => {
      session.once('close', () => resolve())
      session.close()
    })
    clearTimeout(timer)
  }

  private currentSession(): ClientHttp2Session {
    const existing = this.session
    if (existing && !existing.closed && !existing.destroyed) return existing
    const { identity, ca } = this.options
    const session = http2.connect(this.options.url, {
      cert: identity.certPem,
      key: identity.keyPem,
      ...(ca ? { ca: [...rootCertificates, ca] } : {}),
    })
    const forget = () => {
      if (this.session === session) this.session = undefined
    }
    // Errors reach the streams too; without a listener an idle session's error would crash the process.
    session.on('error', forget)
    // After GOAWAY no new stream may start on this session (APNs sends one before closing a connection).
    session.on('goaway', forget)
    session.on('close', forget)
    // An idle push connection should not keep the process alive; pending pushes hold their own timers.
    session.unref()
    this.session = session
    this.sessionsOpened++
    return session
  }

  /**
   * After a timeout, checks that the session still answers: a connection that silently died would
   * otherwise time out every later push too. No PING answer in time: the session is dropped.
   */
  private probe(session: ClientHttp2Session): void {
    if (this.probing || session.destroyed) return
    this.probing = true
    const done = (alive: boolean) => {
      clearTimeout(timer)
      this.probing = false
      if (!alive) session.destroy()
    }
    const timer = setTimeout(() => done(false), this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS)
    timer.unref()
    try {
      if (!session.ping((err) => done(!err))) done(false)
    } catch {
      done(false)
    }
  }
}

/** Maps an APNs response to an outcome. */
export function classify(status: number, headers: IncomingHttpHeaders, body: Buffer): ApnsResult {
  const apnsId = typeof headers['apns-id'] === 'string' ? headers['apns-id'] : undefined
  if (status === 200) return { status, apnsId, outcome: 'delivered' }
  let reason: string | undefined
  let timestamp: number | undefined
  try {
    const json = JSON.parse(body.toString('utf8')) as { reason?: unknown; timestamp?: unknown }
    if (typeof json.reason === 'string') reason = json.reason
    if (typeof json.timestamp === 'number') timestamp = json.timestamp
  } catch {
    // Not JSON (a proxy's error page): the status alone decides.
  }
  const result = { status, apnsId, reason, ...(timestamp === undefined ? {} : { timestamp }) }
  return { ...result, outcome: outcomeOf(status, reason) }
}

function outcomeOf(status: number, reason: string | undefined): ApnsOutcome {
  // 410 (Unregistered): the device token is no longer active for the topic.
  if (status === 410) return 'invalid_token'
  if (status === 400 && (reason === 'BadDeviceToken' || reason === 'DeviceTokenNotForTopic')) return 'invalid_token'
  // 403: BadCertificate, BadCertificateEnvironment, Forbidden… Topic errors come as 400.
  if (status === 403) return 'config_error'
  if (reason === 'TopicDisallowed' || reason === 'BadTopic' || reason === 'MissingTopic') return 'config_error'
  // 429 TooManyRequests (same token pushed too often), 500 InternalServerError, 503 ServiceUnavailable/Shutdown.
  if (status === 429 || status >= 500) return 'retry'
  return 'error'
}

/**
 * Connection-level failures. A TLS alert about our certificate (expired, revoked, unknown issuer) or a
 * server certificate we cannot verify is configuration: retrying cannot fix it. Anything else
 * (refused, reset, DNS) may be transient.
 */
function transportFailure(err: unknown): ApnsResult {
  const codes: string[] = []
  let message = String(err)
  for (let e = err as (Error & { code?: unknown; cause?: unknown }) | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string') codes.push(e.code)
    if (e instanceof Error && depth === 0) message = e.message
  }
  const tls = codes.some((c) => /^ERR_SSL_.*ALERT_(BAD_CERTIFICATE|CERTIFICATE_|UNKNOWN_CA|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED|HANDSHAKE_FAILURE)/.test(c) || SERVER_CERT_ERRORS.has(c))
  return tls ? { status: 0, reason: 'TlsRejected', detail: message, outcome: 'config_error' } : { status: 0, reason: 'ConnectionError', detail: message, outcome: 'retry' }
}

const SERVER_CERT_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

/** Full jitter (a uniform delay up to the exponential cap) keeps many retrying pushes from moving in step. */
export function backoffDelay(attempt: number, policy: RetryPolicy): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1))
  return Math.random() * cap
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
