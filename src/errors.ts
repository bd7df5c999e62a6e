/**
 * Typed errors. Services throw these; each protocol's routes turn them into that protocol's answer
 * (JSON `{error, message}` by default, 401 + WWW-Authenticate on enroll, CertRep FAILURE on SCEP, an
 * HTML page on SSO). The log always has `message`. The client gets `publicMessage` when there is one
 * (a message naming internal ids or echoing input keeps them for the log: SECURITY.md row 29), else
 * `message` when `expose` says so, else a generic sentence for the status.
 */
export interface AppErrorOptions {
  expose?: boolean
  cause?: unknown
  /** What the client is told instead of `message`. */
  publicMessage?: string
}

export class AppError extends Error {
  readonly status: number
  readonly code: string
  readonly expose: boolean
  readonly publicMessage?: string

  constructor(status: number, code: string, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.status = status
    this.code = code
    this.expose = options.expose ?? status < 500
    this.publicMessage = options.publicMessage
  }
}

export class BadRequestError extends AppError {
  constructor(message: string, options: AppErrorOptions & { code?: string } = {}) {
    super(400, options.code ?? 'bad_request', message, options)
  }
}

export class ForbiddenError extends AppError {
  constructor(message: string, options: AppErrorOptions & { code?: string } = {}) {
    super(403, options.code ?? 'forbidden', message, options)
  }
}

export class NotFoundError extends AppError {
  constructor(message = 'Not found', options: AppErrorOptions & { code?: string } = {}) {
    super(404, options.code ?? 'not_found', message, options)
  }
}

export class ConflictError extends AppError {
  constructor(message: string, options: AppErrorOptions & { code?: string } = {}) {
    super(409, options.code ?? 'conflict', message, options)
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(message = 'Request body is too large') {
    super(413, 'payload_too_large', message)
  }
}

export class UnsupportedMediaTypeError extends AppError {
  constructor(message: string) {
    super(415, 'unsupported_media_type', message)
  }
}

export class TooManyRequestsError extends AppError {
  constructor(message = 'Too many requests, try again later') {
    super(429, 'too_many_requests', message)
  }
}

/** The database (or another dependency) cannot answer now; clients should retry. Never 401/403. */
export class ServiceUnavailableError extends AppError {
  constructor(message = 'Service temporarily unavailable, try again shortly', options: { cause?: unknown } = {}) {
    super(503, 'service_unavailable', message, { ...options, expose: true })
  }
}

/**
 * True when `err` means "the database cannot be reached or did not answer in time", as opposed to a
 * query that failed on its own merits. Those become 503 so devices retry instead of giving up.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof ServiceUnavailableError) return true
    const o = e as { name?: string; code?: unknown; message?: unknown; kind?: unknown }
    if (o.name === 'PrismaClientInitializationError') return true
    if (typeof o.code === 'string') {
      // Prisma: cannot reach / timed out / closed / pool timeout / transaction API timeout.
      if (['P1001', 'P1002', 'P1008', 'P1017', 'P2024', 'P2028'].includes(o.code)) return true
      // Node sockets.
      if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH'].includes(o.code)) {
        return true
      }
      // Postgres SQLSTATE: connection exceptions (08xxx), query_canceled (statement timeout),
      // admin/crash shutdown, cannot connect now, too many connections.
      if (/^08/.test(o.code) || ['57014', '57P01', '57P02', '57P03', '53300'].includes(o.code)) return true
    }
    // Driver adapter errors carry the original Postgres error in `cause` or describe a closed pool.
    if (typeof o.message === 'string' && /Connection terminated|connection timeout|Client has encountered a connection error|Cannot use a pool after calling end|timeout exceeded when trying to connect/i.test(o.message)) {
      return true
    }
    if (o.kind === 'DatabaseNotReachable' || o.kind === 'ConnectionClosed' || o.kind === 'SocketTimeout') return true
    // Raw SQL queries report any driver failure as P2010, with the adapter's error in meta.
    const adapterCause = (e as { meta?: { driverAdapterError?: { cause?: unknown } } }).meta?.driverAdapterError?.cause
    if (adapterCause && isDatabaseUnavailable(adapterCause)) return true
  }
  return false
}
