/**
 * How the simulated device reaches a server: one method, bytes in and out, no redirects followed (the
 * device decides what a 3xx means: discovery follows it, the sign-in callback is a 308 to a custom
 * scheme). `httpTransport` is the real network (the `simulate` command, load mode); the test suite
 * passes `app.inject` behind the same interface (test/helpers/inject-transport.ts).
 */

export interface TransportRequest {
  /** Lower-case names. */
  headers?: Record<string, string>
  body?: Uint8Array | string
}

export interface TransportResponse {
  status: number
  /** Lower-case names; repeated headers joined with ", " (set-cookie is not needed by a device). */
  headers: Record<string, string>
  body: Buffer
}

export interface Transport<R extends TransportResponse = TransportResponse> {
  request(method: string, url: string, init?: TransportRequest): Promise<R>
}

/**
 * The request never got an HTTP answer: `code` is the system's (ECONNREFUSED, ENOTFOUND, ETIMEDOUT,
 * a TLS verification code such as DEPTH_ZERO_SELF_SIGNED_CERT, ...).
 */
export class TransportError extends Error {
  constructor(
    readonly code: string,
    readonly url: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'TransportError'
  }
}

export interface HttpTransportOptions {
  /** Per request, connect to last byte. Default 30 s (the server's own REQUEST_TIMEOUT). */
  timeoutMs?: number
}

/** The network, through Node's fetch (undici: keep-alive connection pools per origin). */
export function httpTransport(options: HttpTransportOptions = {}): Transport {
  const timeoutMs = options.timeoutMs ?? 30_000
  return {
    async request(method, url, init = {}) {
      let res: Response
      try {
        res = await fetch(url, {
          method,
          headers: init.headers,
          body: init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : Buffer.from(init.body),
          redirect: 'manual',
          signal: AbortSignal.timeout(timeoutMs),
        })
      } catch (err) {
        throw transportError(err, url, timeoutMs)
      }
      let body: Buffer
      try {
        body = Buffer.from(await res.arrayBuffer())
      } catch (err) {
        throw transportError(err, url, timeoutMs)
      }
      const headers: Record<string, string> = {}
      res.headers.forEach((value, name) => {
        headers[name] = value
      })
      return { status: res.status, headers, body }
    },
  }
}

function transportError(err: unknown, url: string, timeoutMs: number): TransportError {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string; errors?: { code?: string }[] } }
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return new TransportError('ETIMEDOUT', url, `no answer within ${timeoutMs} ms`, { cause: err })
  const cause = e?.cause
  const code = cause?.code ?? cause?.errors?.find((x) => x.code)?.code ?? 'EFETCH'
  return new TransportError(code, url, cause?.message || e?.message || String(err), { cause: err })
}
