/**
 * The device simulator's transport for tests: requests to the app's SERVER_URL go through `app.inject`
 * (the real routes, no socket); any other origin is unreachable, as it would be for a device that can
 * only reach what SERVER_URL names. The inject response rides along for tests that read it
 * (`statusCode`, `json()`, `body` as text).
 */
import type { Response as InjectResponse } from 'light-my-request'
import type { App } from '../../src/app.js'
import { TransportError, type Transport, type TransportResponse } from '../../src/device/transport.js'

export interface InjectedResponse extends TransportResponse {
  inject: InjectResponse
}

export function injectTransport(app: App, options: { remoteAddress?: string } = {}): Transport<InjectedResponse> {
  const origin = new URL(app.config.serverUrl).origin
  return {
    async request(method, url, init = {}) {
      const target = new URL(url)
      if (target.origin !== origin) throw new TransportError('ECONNREFUSED', url, `this test app serves ${origin} only`)
      const res = await app.inject({
        method: method as 'GET',
        url: target.pathname + target.search,
        headers: init.headers,
        ...(init.body === undefined ? {} : { payload: typeof init.body === 'string' ? init.body : Buffer.from(init.body) }),
        ...(options.remoteAddress ? { remoteAddress: options.remoteAddress } : {}),
      })
      const headers: Record<string, string> = {}
      for (const [name, value] of Object.entries(res.headers)) {
        if (value !== undefined) headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value)
      }
      return { status: res.statusCode, headers, body: res.rawPayload, inject: res }
    },
  }
}

/** One transport over several apps (server processes sharing a database): each request goes to a random one. */
export function randomOf(transports: Transport<InjectedResponse>[]): Transport<InjectedResponse> & { counts: number[] } {
  const counts = transports.map(() => 0)
  return {
    counts,
    request(method, url, init) {
      const i = Math.floor(Math.random() * transports.length)
      counts[i]!++
      return transports[i]!.request(method, url, init)
    },
  }
}
