/**
 * SECURITY.md row 23: no secret reaches a log line. A whole enrollment through the device simulator with
 * each sign-in method (the development form, SAML with the in-process IdP, OAuth 2 with oidc-provider,
 * including a token refresh and a replayed code), the admin API (a declaration, a command, a push through
 * the fake APNs) and a few refused requests carrying secrets, with LOG_LEVEL=debug; then every captured
 * pino line is searched for the actual value of every secret that crossed the wire: access and refresh
 * tokens, the authorization code, the SAMLResponse and RelayState, the SCEP challenge, Mdm-Signature
 * headers, the device's private key, the push token and PushMagic, ADMIN_API_TOKEN, SERVER_SECRET, the
 * APNs key and the IdP's own tokens. The secrets are read from the traffic (a recording transport), not
 * from the code under test.
 */
import { afterAll, describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { simulateEnrollment, type SignInMethod } from '../../src/device/index.js'
import type { Transport, TransportRequest } from '../../src/device/transport.js'
import { parsePlistDict } from '../../src/protocol/plist.js'
import { admin, ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, TEST_SERVER_URL, type TestApp } from '../helpers/app.js'
import { startFakeApns, type FakeApns } from '../helpers/fake-apns.js'
import { recordFigures } from '../helpers/figures.js'
import { injectTransport, type InjectedResponse } from '../helpers/inject-transport.js'
import { oauth2Env } from '../helpers/oauth2.js'
import { startTestIdp, type TestIdp as OidcIdp } from '../helpers/oidc-idp.js'
import { apnsEnv } from '../helpers/push.js'
import { createTestIdp } from '../helpers/saml-idp.js'
import { oidcSession, samlSession } from '../helpers/web-sessions.js'

const closers: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const close of closers.reverse()) await close()
})

/** Every secret seen, by kind; each value is searched for in the logs. */
class Secrets {
  readonly byKind = new Map<string, Set<string>>()
  add(kind: string, value: string | undefined | null): void {
    // Short values (a 4-digit code, "true") would match innocent text; ours are all long.
    if (!value || value.length < 12) return
    let set = this.byKind.get(kind)
    if (!set) this.byKind.set(kind, (set = new Set()))
    set.add(value)
  }
  /** A long Base64 or PEM value: the whole, and a middle slice (a partial leak, a re-wrapped line). */
  addLong(kind: string, value: string | undefined): void {
    if (!value) return
    this.add(kind, value)
    const compact = value.replace(/-----[^-]+-----|\s+/g, '')
    if (compact.length > 80) this.add(kind, compact.slice(Math.floor(compact.length / 2) - 20, Math.floor(compact.length / 2) + 20))
  }
  kinds(): string[] {
    return [...this.byKind.keys()].sort()
  }
}

/** Records the secrets in every request the device makes and every answer it gets. */
function recording(inner: Transport<InjectedResponse>, secrets: Secrets): Transport<InjectedResponse> {
  return {
    async request(method: string, url: string, init: TransportRequest = {}) {
      const headers = init.headers ?? {}
      const bearer = /^Bearer (.+)$/.exec(headers.authorization ?? '')
      if (bearer) secrets.add('access token (Authorization)', bearer[1])
      secrets.addLong('Mdm-Signature', headers['mdm-signature'])
      const body = init.body === undefined ? '' : typeof init.body === 'string' ? init.body : Buffer.from(init.body).toString('utf8')
      if (/x-www-form-urlencoded/.test(headers['content-type'] ?? '')) {
        const form = new URLSearchParams(body)
        secrets.add('authorization code', form.get('code'))
        secrets.add('refresh token', form.get('refresh_token'))
        secrets.addLong('SAMLResponse', form.get('SAMLResponse') ?? undefined)
        secrets.add('RelayState', form.get('RelayState'))
      }
      if (/aspen-mdm-checkin/.test(headers['content-type'] ?? '') && body.includes('TokenUpdate')) {
        const dict = parsePlistDict(body)
        if (dict.Token instanceof Uint8Array) {
          secrets.add('push token (hex)', Buffer.from(dict.Token).toString('hex'))
          secrets.add('push token (base64)', Buffer.from(dict.Token).toString('base64'))
        }
        secrets.add('PushMagic', typeof dict.PushMagic === 'string' ? dict.PushMagic : undefined)
      }
      const res = await inner.request(method, url, init)
      const location = res.headers.location ?? ''
      secrets.add('access token (308 Location)', /access-token=([^&]+)/.exec(location)?.[1])
      secrets.add('authorization code', /[?&]code=([^&]+)/.exec(location)?.[1])
      if (/json/.test(res.headers['content-type'] ?? '')) {
        try {
          const json = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>
          if (typeof json.access_token === 'string') secrets.add('access token (token endpoint)', json.access_token)
          if (typeof json.refresh_token === 'string') secrets.add('refresh token', json.refresh_token)
        } catch {}
      }
      if (res.headers['content-type'] === 'application/x-apple-aspen-config') {
        // The signed profile holds the SCEP payload's one-time challenge in the clear (CMS content).
        const challenge = /<key>Challenge<\/key>\s*<string>([^<]+)<\/string>/.exec(res.body.toString('latin1'))?.[1]
        secrets.add('SCEP challenge', challenge)
      }
      return res
    },
  }
}

interface Method {
  name: string
  user: string
  setup(): Promise<{ env: Record<string, string>; signIn: (app: App, transport: Transport) => SignInMethod; idp?: OidcIdp }>
}

const METHODS: Method[] = [
  { name: 'development sign-in', user: 'dev.logs@example.test', setup: async () => ({ env: {}, signIn: () => ({ kind: 'dev' }) }) },
  {
    name: 'SAML',
    user: 'saml.logs@example.test',
    setup: async () => {
      const idp = await createTestIdp()
      return { env: idp.env, signIn: (app, transport) => ({ kind: 'browser', session: samlSession(app, transport, idp) }) }
    },
  },
  {
    name: 'OAuth 2',
    user: 'olivia.logs@example.com',
    setup: async () => {
      const idp = await startTestIdp()
      closers.push(() => idp.close())
      idp.accounts.set('olivia-logs', { sub: 'olivia-logs', password: 'correct horse', email: 'olivia.logs@example.com', name: 'Olivia' })
      // The push certificate of this run names its own topic.
      const { APNS_TOPIC: _topic, ...env } = oauth2Env(idp)
      return { env, signIn: () => ({ kind: 'browser', session: oidcSession({ login: 'olivia.logs@example.com', password: 'correct horse' }) }), idp }
    },
  },
]

let fake: FakeApns

describe.each(METHODS)('secrets in the logs of a whole enrollment: $name', (method) => {
  it('no log line holds any secret that crossed the wire', async () => {
    fake ??= await startFakeApns()
    if (!closers.includes(closeFake)) closers.push(closeFake)
    const identity = await fake.issuePushIdentity()
    const { env, signIn, idp } = await method.setup()
    const t: TestApp = await buildTestApp({ env: { ...env, ...apnsEnv(fake, identity), ADMIN_API_TOKEN: ADMIN_TOKEN, LOG_LEVEL: 'debug' } })
    closers.push(() => t.close())
    const secrets = new Secrets()
    const transport = recording(injectTransport(t.app), secrets)

    let tokenUrl: string | undefined
    const report = await simulateEnrollment({
      transport,
      server: TEST_SERVER_URL,
      user: method.user,
      signIn: signIn(t.app, transport),
      beforeCommands: async (device) => {
        const pem = device.keys!.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
        secrets.addLong('device private key (PEM)', pem)
        secrets.add('device private key (DER hex)', (device.keys!.privateKey.export({ type: 'pkcs8', format: 'der' }) as Buffer).toString('hex').slice(200, 264))
        secrets.add('push token (hex)', Buffer.from(device.pushToken).toString('hex'))
        secrets.add('PushMagic', device.pushMagic)
        secrets.add('refresh token', device.refreshToken)
        tokenUrl = device.challenge?.method === 'apple-oauth2' ? device.challenge.tokenUrl : undefined
        // The administrator: a declaration, a command (which pushes), an explicit push, reads.
        const enrollment = (await admin(t.app, 'GET', `/enrollments?enrollment_id=${device.enrollmentId}`)).json().items[0]
        expect((await admin(t.app, 'PUT', `/teams/${enrollment.team.id}/declarations/com.example.logs`, { Type: 'com.apple.configuration.management.status-subscriptions', Payload: { StatusItems: [{ Name: 'device.operating-system.version' }] } })).statusCode).toBe(200)
        expect((await admin(t.app, 'POST', `/enrollments/${enrollment.id}/commands`, { RequestType: 'DeviceInformation', Queries: ['OSVersion'] })).statusCode).toBe(201)
        const push = await admin(t.app, 'POST', `/enrollments/${enrollment.id}/push`)
        expect(push.statusCode, push.body).toBe(200)
        expect((await admin(t.app, 'GET', `/enrollments/${enrollment.id}`)).statusCode).toBe(200)
      },
    })
    expect(report.ok, JSON.stringify(report.diagnosis)).toBe(true)

    // Refusals that carry secrets: a wrong admin token, a replayed profile token, a replayed code and a refresh (OAuth 2).
    const wrongAdmin = 'wrong-admin-token-0123456789abcdef0123456789'
    secrets.add('a guessed ADMIN_API_TOKEN', wrongAdmin)
    expect((await t.app.inject({ url: '/api/v1/admin/enrollments', headers: { authorization: `Bearer ${wrongAdmin}` } })).statusCode).toBe(401)
    const used = [...(secrets.byKind.get('access token (308 Location)') ?? secrets.byKind.get('access token (token endpoint)') ?? [])][0]
    if (used) await transport.request('POST', `${TEST_SERVER_URL}/api/mdm/apple/enroll`, { headers: { 'content-type': 'application/pkcs7-signature', authorization: `Bearer ${used}` }, body: 'x' })
    if (tokenUrl) {
      const refresh = [...(secrets.byKind.get('refresh token') ?? [])][0]!
      const refreshed = await transport.request('POST', tokenUrl, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refresh, client_id: idp!.clientId }).toString() })
      expect(refreshed.status, refreshed.body.toString()).toBe(200)
      // Then the code again: refused (and, as a replay, it ends the grant).
      for (const code of secrets.byKind.get('authorization code') ?? []) {
        await transport.request('POST', tokenUrl, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: 'apple-remotemanagement-user-login:/oauth2/redirection', client_id: idp!.clientId }).toString() })
      }
      for (const s of [...idp!.issued.codes, ...idp!.issued.accessTokens, ...idp!.issued.refreshTokens]) secrets.add("the IdP's own codes and tokens", s)
    }

    secrets.add('ADMIN_API_TOKEN', ADMIN_TOKEN)
    secrets.add('SERVER_SECRET', t.config.serverSecret)
    secrets.addLong('APNs private key', identity.keyPem)

    // The test saw every kind it is about (else it proves nothing).
    const expected = ['ADMIN_API_TOKEN', 'Mdm-Signature', 'PushMagic', 'SCEP challenge', 'access token (Authorization)', 'device private key (PEM)', 'push token (hex)', 'APNs private key']
    if (method.name === 'SAML') expected.push('SAMLResponse', 'RelayState', 'access token (308 Location)')
    if (method.name === 'OAuth 2') expected.push('authorization code', 'refresh token', 'access token (token endpoint)', "the IdP's own codes and tokens")
    expect(secrets.kinds()).toEqual(expect.arrayContaining(expected))

    const lines = t.logLines
    // The log is the real one: requests, check-ins, the admin's audit lines, the push.
    expect(lines.length).toBeGreaterThan(40)
    expect(lines.some((l) => l.includes('"admin: '))).toBe(true)
    const leaks: string[] = []
    for (const [kind, values] of secrets.byKind) {
      for (const value of values) {
        const line = lines.find((l) => l.includes(value))
        if (line) leaks.push(`${kind}: ${line.slice(0, 300)}`)
      }
    }
    expect(leaks).toEqual([])
    recordFigures(`secrets in logs: ${method.name}`, { 'log lines': lines.length, 'secret kinds': secrets.byKind.size, 'secret values': [...secrets.byKind.values()].reduce((n, s) => n + s.size, 0), leaks: leaks.length })
  }, 180_000)
})

async function closeFake() {
  await fake?.close()
}
