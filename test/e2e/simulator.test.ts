/**
 * The whole enrollment through the device simulator (src/device), once per sign-in method, from service
 * discovery to an acknowledged command and a declarative sync: the development sign-in form, SAML with
 * the in-process IdP, OAuth 2 with oidc-provider. Then the same with two server processes (two apps)
 * sharing one database, each request to a random one. On PGlite, or on Postgres with TEST_DATABASE_URL.
 *
 * The administrator's part goes through the admin API: a declaration assigned to the team (which queues
 * a DeclarativeManagement command to the enrolled device) and a DeviceInformation command.
 */
import { afterAll, describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { simulateEnrollment, type SignInMethod, type SimulationReport } from '../../src/device/index.js'
import type { Transport } from '../../src/device/transport.js'
import { admin, ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, TEST_SERVER_URL, type TestApp } from '../helpers/app.js'
import { injectTransport, randomOf } from '../helpers/inject-transport.js'
import { oauth2Env } from '../helpers/oauth2.js'
import { startTestIdp } from '../helpers/oidc-idp.js'
import { createTestIdp } from '../helpers/saml-idp.js'
import { oidcSession, samlSession } from '../helpers/web-sessions.js'

const closers: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const close of closers.reverse()) await close()
})

async function app(env: Record<string, string> = {}, shared?: TestApp): Promise<TestApp> {
  const t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ...env }, ...(shared ? { database: shared.database } : {}) })
  closers.push(() => (shared ? t.app.close() : t.close()))
  return t
}

const DECLARATION = 'com.example.simulator.subscriptions'

/**
 * Runs the simulator; between TokenUpdate and the command channel the administrator assigns a
 * declaration and queues DeviceInformation (through `adminApp`, any of the processes).
 */
async function enroll(transport: Transport, adminApp: () => App, user: string, signIn: SignInMethod) {
  const queued: string[] = []
  const report = await simulateEnrollment({
    transport,
    server: TEST_SERVER_URL,
    user,
    signIn,
    beforeCommands: async (device) => {
      const a = adminApp()
      const enrollment = (await admin(a, 'GET', `/enrollments?enrollment_id=${device.enrollmentId}`)).json().items[0]
      expect(enrollment.status).toBe('active')
      const put = await admin(a, 'PUT', `/teams/${enrollment.team.id}/declarations/${DECLARATION}`, {
        Type: 'com.apple.configuration.management.status-subscriptions',
        Payload: { StatusItems: [{ Name: 'device.operating-system.version' }] },
      })
      expect(put.statusCode, put.body).toBe(200)
      const command = await admin(adminApp(), 'POST', `/enrollments/${enrollment.id}/commands`, { RequestType: 'DeviceInformation', Queries: ['OSVersion', 'ProductName', 'EnrollmentID'] })
      expect(command.statusCode, command.body).toBe(201)
      queued.push(command.json().command_uuid)
    },
  })
  return { report, queued }
}

/** What every whole flow must show: every step passed, the command acknowledged with the device's answers, the declaration synced. */
async function expectWholeFlow(report: SimulationReport, queued: string[], adminApp: () => App, signedInAs: string) {
  expect(report.diagnosis?.text).toBeUndefined()
  expect(report.ok).toBe(true)
  expect(report.steps.map((s) => s.step)).toEqual(['discovery', 'enroll-challenge', 'sign-in', 'enroll', 'profile', 'scep', 'authenticate', 'token-update', 'commands', 'declarative-sync'])
  expect(report.steps.every((s) => s.ok && s.ms >= 0)).toBe(true)
  expect(report.steps.find((s) => s.step === 'profile')!.summary).toContain(`for ${signedInAs}`)

  // The command queued by the admin is acknowledged with the simulator's answers; the declaration change
  // reached the device as a DeclarativeManagement command, which it acknowledged and synced.
  expect(report.commands.map((c) => [c.requestType, c.status])).toEqual(
    expect.arrayContaining([
      ['DeclarativeManagement', 'Acknowledged'],
      ['DeviceInformation', 'Acknowledged'],
    ]),
  )
  const view = (await admin(adminApp(), 'GET', `/commands/${queued[0]}`)).json()
  expect(view).toMatchObject({ status: 'acknowledged', result: { Status: 'Acknowledged', QueryResponses: { OSVersion: '18.2.1', ProductName: 'iPhone12,1', EnrollmentID: report.enrollmentId } } })
  expect(report.declarations).toContain(DECLARATION)
  const enrollment = (await admin(adminApp(), 'GET', `/enrollments?enrollment_id=${report.enrollmentId}`)).json().items[0]
  const held = enrollment.channels[0].ddm_status.StatusItems.management.declarations.configurations
  expect(held).toEqual(expect.arrayContaining([expect.objectContaining({ identifier: DECLARATION, active: true })]))
  // The user who signed in is the enrollment's.
  expect(String(enrollment.user.email).toLowerCase()).toBe(signedInAs.toLowerCase())
}

interface Method {
  name: string
  user: string
  /** Starts the IdP (if any) and returns the server's environment and how the user signs in. */
  setup(): Promise<{ env: Record<string, string>; signIn: (apps: App[], transport: Transport) => SignInMethod; challenge: string }>
}

const METHODS: Method[] = [
  { name: 'development sign-in', user: 'dev.user@example.test', setup: async () => ({ env: {}, signIn: () => ({ kind: 'dev' }), challenge: 'apple-as-web' }) },
  {
    name: 'SAML with the in-process IdP',
    user: 'saml.user@example.test',
    setup: async () => {
      const idp = await createTestIdp()
      return { env: { ...idp.env, SSO_REQUIRE_IDENTIFIER_MATCH: 'true' }, signIn: (apps, transport) => ({ kind: 'browser', session: samlSession(apps[0]!, transport, idp) }), challenge: 'apple-as-web' }
    },
  },
  {
    name: 'OAuth 2 with oidc-provider',
    user: 'olivia@example.com',
    setup: async () => {
      const idp = await startTestIdp()
      closers.push(() => idp.close())
      idp.accounts.set('olivia', { sub: 'olivia', password: 'correct horse', email: 'olivia@example.com', name: 'Olivia' })
      return { env: oauth2Env(idp), signIn: () => ({ kind: 'browser', session: oidcSession({ login: 'olivia@example.com', password: 'correct horse' }) }), challenge: 'apple-oauth2' }
    },
  },
]

describe.each(METHODS)('the whole enrollment through the simulator: $name', (method) => {
  it('one server: discovery to an acknowledged command and a declarative sync', async () => {
    const { env, signIn, challenge } = await method.setup()
    const t = await app(env)
    const transport = injectTransport(t.app)
    const { report, queued } = await enroll(transport, () => t.app, method.user, signIn([t.app], transport))
    expect(report.steps.find((s) => s.step === 'enroll-challenge')?.summary).toContain(challenge)
    await expectWholeFlow(report, queued, () => t.app, method.user)
  }, 180_000)

  it('two server processes sharing one database, each request to a random one', async () => {
    const { env, signIn } = await method.setup()
    const a = await app(env)
    const b = await app(env, a)
    const apps = [a.app, b.app]
    const either = () => apps[Math.floor(Math.random() * apps.length)]!
    const transport = randomOf(apps.map((x) => injectTransport(x)))
    const { report, queued } = await enroll(transport, either, method.user, signIn(apps, transport))
    await expectWholeFlow(report, queued, either, method.user)
    // Both processes served the device (about 20 requests: each is missed with probability 2^-20).
    expect(Math.min(...transport.counts)).toBeGreaterThan(0)
  }, 180_000)
})
