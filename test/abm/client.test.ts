/**
 * The Device Assignment Services client against the fake ABM, which verifies OAuth 1.0a signatures with
 * its own code: a correctly signed session request is accepted and the same request with its signature
 * (or secret) altered is refused, so a client that signed wrongly would fail here; expired sessions are
 * renewed; a session handed out in a response replaces the old one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AbmApiError, AbmClient } from '../../src/abm/client.js'
import type { OAuthCredentials } from '../../src/abm/oauth1.js'
import { startFakeAbm, type FakeAbm } from '../helpers/fake-abm.js'

let fake: FakeAbm
let credentials: OAuthCredentials

beforeAll(async () => {
  fake = await startFakeAbm()
  credentials = { consumerKey: fake.token.consumer_key, consumerSecret: fake.token.consumer_secret, accessToken: fake.token.access_token, accessSecret: fake.token.access_secret }
})
afterAll(() => fake.close())

/** fetch that rewrites the Authorization header of /session requests. */
function tampering(change: (header: string) => string): typeof fetch {
  return (input, init) => {
    const headers = new Headers(init?.headers)
    const auth = headers.get('authorization')
    if (auth) headers.set('authorization', change(auth))
    return fetch(input, { ...init, headers })
  }
}

const sessionRequests = () => fake.requests.filter((r) => r.path === '/session')

describe('the ABM client', () => {
  it('opens a session with a signed request and reads the account with it', async () => {
    const client = new AbmClient({ baseUrl: fake.url, credentials })
    const account = await client.account()
    expect(account.server_uuid).toBe(fake.account.server_uuid)
    expect(account.org_name).toBe('Example Corp')
    expect(sessionRequests().at(-1)).toMatchObject({ status: 200 })
    // Sent with the session, not signed again.
    expect(fake.requests.at(-1)).toMatchObject({ path: '/account', status: 200 })
    expect(fake.requests.at(-1)!.session).toMatch(/O/)
  })

  it('is refused by ABM when its signature is altered (the fake recomputes it), and accepted when not', async () => {
    const flipped = (header: string) =>
      header.replace(/oauth_signature="([^"]+)"/, (_m, sig: string) => {
        const bytes = Buffer.from(decodeURIComponent(sig), 'base64')
        bytes[0]! ^= 0x01
        return `oauth_signature="${encodeURIComponent(bytes.toString('base64'))}"`
      })
    const tampered = new AbmClient({ baseUrl: fake.url, credentials, fetch: tampering(flipped) })
    const error = await tampered.startSession().catch((err: unknown) => err)
    expect(error).toBeInstanceOf(AbmApiError)
    expect(error).toMatchObject({ path: '/session', status: 401 })
    expect(sessionRequests().at(-1)).toMatchObject({ status: 401, refused: 'invalid signature' })

    // The identical path without tampering: accepted.
    const honest = new AbmClient({ baseUrl: fake.url, credentials, fetch: tampering((h) => h) })
    await expect(honest.startSession()).resolves.toMatch(/O/)
    expect(sessionRequests().at(-1)).toMatchObject({ status: 200 })
  })

  it('is refused with a wrong secret, another token, or a replayed nonce', async () => {
    await expect(new AbmClient({ baseUrl: fake.url, credentials: { ...credentials, accessSecret: 'AS_wrong' } }).startSession()).rejects.toMatchObject({ status: 401 })
    expect(sessionRequests().at(-1)!.refused).toBe('invalid signature')
    await expect(new AbmClient({ baseUrl: fake.url, credentials: { ...credentials, accessToken: 'AT_other' } }).startSession()).rejects.toMatchObject({ status: 401 })
    expect(sessionRequests().at(-1)!.refused).toBe('invalid token')
    let first: string | undefined
    const replaying = new AbmClient({
      baseUrl: fake.url,
      credentials,
      fetch: tampering((h) => {
        first ??= h
        return first
      }),
    })
    await replaying.startSession()
    await expect(replaying.startSession()).rejects.toMatchObject({ status: 401 })
    expect(sessionRequests().at(-1)!.refused).toBe('nonce already used')
    // An unsupported method is a 400, as Apple lists.
    const hmacSha256 = new AbmClient({ baseUrl: fake.url, credentials, fetch: tampering((h) => h.replace('HMAC-SHA1', 'HMAC-SHA256')) })
    await expect(hmacSha256.startSession()).rejects.toMatchObject({ status: 400 })
  })

  it('renews an expired session once and repeats the call', async () => {
    const client = new AbmClient({ baseUrl: fake.url, credentials })
    await client.account()
    expect(client.sessionsStarted).toBe(1)
    fake.expireSessions()
    const before = fake.requests.length
    const account = await client.account()
    expect(account.server_uuid).toBe(fake.account.server_uuid)
    expect(client.sessionsStarted).toBe(2)
    expect(fake.requests.slice(before).map((r) => [r.path, r.status])).toEqual([
      ['/account', 401],
      ['/session', 200],
      ['/account', 200],
    ])
  })

  it('uses a session ABM hands out in a response', async () => {
    const client = new AbmClient({ baseUrl: fake.url, credentials })
    await client.account()
    fake.rotateSessionInNextResponse()
    await client.account()
    const rotated = fake.requests.at(-1)!.session
    await client.account()
    expect(client.sessionsStarted).toBe(1)
    const last = fake.requests.at(-1)!
    expect(last).toMatchObject({ path: '/account', status: 200 })
    expect(last.session).not.toBe(rotated)
  })

  it("names Apple's error codes and says when ABM cannot be reached", async () => {
    const client = new AbmClient({ baseUrl: fake.url, credentials })
    await client.removeDiscovery()
    await expect(client.fetchDiscovery()).rejects.toMatchObject({ status: 404, appleCode: 'NOT_FOUND' })
    await expect(client.assignDiscovery('ftp://example.com/x')).rejects.toMatchObject({ status: 400, appleCode: 'MDM_SERVICE_DISCOVERY_URL_NOT_VALID' })
    await client.assignDiscovery('https://mdm.example.com/.well-known/com.apple.remotemanagement')
    await expect(client.fetchDiscovery()).resolves.toMatchObject({ mdm_service_discovery_url: 'https://mdm.example.com/.well-known/com.apple.remotemanagement' })
    const down = new AbmClient({ baseUrl: 'http://127.0.0.1:9', credentials, timeoutMs: 2000 })
    await expect(down.account()).rejects.toMatchObject({ status: undefined, message: expect.stringMatching(/cannot be reached/) })
  })
})
