/**
 * The simulator library against the real app (through app.inject): what it says when a step fails, the
 * --self-signed body in strict and log mode, NotNow, Enrollment SSO, account-driven device enrollment
 * (--enrollment device, or discovery's mdm-adde), load mode's statistics; and the command answers and
 * diagnoses as pure functions.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { answerCommand, type DeviceState } from '../../src/device/answers.js'
import { diagnose } from '../../src/device/diagnose.js'
import { formatLoadTable, runLoad, simulateEnrollment } from '../../src/device/index.js'
import { MODELS } from '../../src/device/models.js'
import { StepFailure } from '../../src/device/steps.js'
import { admin, ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, TEST_SERVER_URL, type TestApp } from '../helpers/app.js'
import { injectTransport } from '../helpers/inject-transport.js'
import { createTestIdp } from '../helpers/saml-idp.js'

let strict: TestApp
beforeAll(async () => {
  strict = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN } })
})
afterAll(async () => strict?.close())

const run = (t: TestApp, options: Partial<Parameters<typeof simulateEnrollment>[0]> = {}) =>
  simulateEnrollment({ transport: injectTransport(t.app), server: TEST_SERVER_URL, user: 'sim@example.test', signIn: { kind: 'dev' }, ...options })

describe('diagnosis of a failed step', () => {
  it('--self-signed against a strict server: the first POST is refused, and the diagnosis names ENROLL_DEVICE_SIGNATURE', async () => {
    const report = await run(strict, { selfSigned: true })
    expect(report.ok).toBe(false)
    expect(report.steps.map((s) => [s.step, s.ok])).toEqual([
      ['discovery', true],
      ['enroll-challenge', false],
    ])
    expect(report.diagnosis).toMatchObject({ step: 'enroll-challenge', status: 403, errorCode: 'untrusted_device', serverMessage: 'The enroll request is not signed by an Apple device' })
    expect(report.diagnosis!.text).toMatch(/^Enroll, first POST \(401 challenge\) failed: a device expects 401 with WWW-Authenticate/)
    expect(report.diagnosis!.text).toMatch(/--self-signed sends a stand-in signature: drop --self-signed .* or set ENROLL_DEVICE_SIGNATURE=log/)
  })

  it('a token the server does not know: the second POST gets 401 again, and the diagnosis says why that happens', async () => {
    const report = await run(strict, { signIn: { kind: 'token', token: 'not-a-token' } })
    expect(report.steps.map((s) => [s.step, s.ok])).toEqual([
      ['discovery', true],
      ['enroll-challenge', true],
      ['sign-in', true],
      ['enroll', false],
    ])
    expect(report.diagnosis).toMatchObject({ step: 'enroll', status: 401 })
    expect(report.diagnosis!.fix).toMatch(/did not take the access token: a token fetches one profile only/)
  })

  it('an address nothing listens on: discovery names it; an unknown enroll URL: 404 and the rotated URL', async () => {
    const nothing = await run(strict, { server: 'https://elsewhere.example.test' })
    expect(nothing.diagnosis).toMatchObject({ step: 'discovery', networkCode: 'ECONNREFUSED' })
    expect(nothing.diagnosis!.text).toContain('nothing listens at https://elsewhere.example.test: start the server (npm start) or correct --server')
    const unknown = await run(strict, { server: undefined, enrollUrl: `${TEST_SERVER_URL}/api/mdm/apple/enroll/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA` })
    expect(unknown.diagnosis).toMatchObject({ step: 'enroll-challenge', status: 404 })
    expect(unknown.diagnosis!.fix).toMatch(/rotated/)
  })

  it('--sign-in dev on a server with a SAML IdP: the sign-in step says the form is not there, and why', async () => {
    const idp = await createTestIdp()
    const saml = await buildTestApp({ env: idp.env, database: strict.database })
    try {
      const report = await run(saml)
      expect(report.diagnosis).toMatchObject({ step: 'sign-in', got: 'the page that sends the user to the SAML IdP' })
      expect(report.diagnosis!.fix).toMatch(/development sign-in exists only when no IdP is configured/)
    } finally {
      await saml.app.close()
    }
  }, 120_000)

  it('turns network failures into the likely fix: SERVER_URL for another origin, TLS trust, rate limits', () => {
    const net = (url: string, code: string) => new StepFailure('scep', { expected: 'x', got: 'y', url, networkCode: code })
    expect(diagnose(net('http://localhost:8080/mdm/apple/scep', 'ECONNREFUSED'), { server: 'http://192.168.1.5:8080' }).text).toContain(
      'SERVER_URL is http://localhost:8080 but you reached the server at http://192.168.1.5:8080',
    )
    expect(diagnose(net('https://mdm.example.com/x', 'DEPTH_ZERO_SELF_SIGNED_CERT'), { server: 'https://mdm.example.com' }).fix).toMatch(/not trusted here .*NODE_EXTRA_CA_CERTS/)
    expect(diagnose(new StepFailure('sign-in', { expected: 'x', got: '429', status: 429 })).fix).toMatch(/SSO_RATE_LIMIT/)
  })
})

describe('the device', () => {
  it('--self-signed on a server in ENROLL_DEVICE_SIGNATURE=log mode enrolls', async () => {
    const log = await buildTestApp({ env: { ENROLL_DEVICE_SIGNATURE: 'log' }, database: strict.database })
    try {
      const report = await run(log, { selfSigned: true, user: 'selfsigned@example.test' })
      expect(report.diagnosis?.text).toBeUndefined()
      expect(log.logs().some((l) => String(l.msg).includes('ENROLL_DEVICE_SIGNATURE=log'))).toBe(true)
    } finally {
      await log.app.close()
    }
  }, 120_000)

  it('--not-now: the queued command is answered NotNow and stays queued', async () => {
    let uuid = ''
    const report = await run(strict, {
      user: 'notnow@example.test',
      notNow: true,
      beforeCommands: async (device) => {
        const enrollment = (await admin(strict.app, 'GET', `/enrollments?enrollment_id=${device.enrollmentId}`)).json().items[0]
        uuid = (await admin(strict.app, 'POST', `/enrollments/${enrollment.id}/commands`, { RequestType: 'ProfileList' })).json().command_uuid
      },
    })
    expect(report.ok, report.diagnosis?.text).toBe(true)
    expect(report.commands).toEqual([{ commandUuid: uuid, requestType: 'ProfileList', status: 'NotNow', note: 'ProfileList: NotNow (--not-now)' }])
    expect((await admin(strict.app, 'GET', `/commands/${uuid}`)).json().status).toBe('not_now')
  })

  it('a Mac opens its user channel and checks out on request', async () => {
    const report = await run(strict, { user: 'mac@example.test', modelFamily: 'Mac', checkout: true })
    expect(report.ok, report.diagnosis?.text).toBe(true)
    expect(report.steps.map((s) => s.step)).toContain('user-channel')
    const enrollment = (await admin(strict.app, 'GET', `/enrollments?enrollment_id=${report.enrollmentId}`)).json().items[0]
    expect(enrollment).toMatchObject({ status: 'checked_out', device: { product_name: 'MacBookPro18,3' } })
    expect(enrollment.channels.map((c: { type: string }) => c.type).sort()).toEqual(['device', 'user'])
  })

  it('checks the Enrollment SSO document and that the sync serves its declarations unchanged', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sim-esso-'))
    writeFileSync(path.join(dir, 'sso.json'), JSON.stringify({ ExtensionIdentifier: 'com.example.sso.extension', TeamIdentifier: 'ABCDE12345', Type: 'Redirect', URLs: ['https://login.example.com/'] }))
    const esso = await buildTestApp({ env: { ESSO_EXTENSIBLE_SSO: path.join(dir, 'sso.json'), ESSO_ITUNES_STORE_ID: '123456789' } })
    try {
      const report = await run(esso, { user: 'esso@example.test' })
      expect(report.ok, report.diagnosis?.text).toBe(true)
      expect(report.steps.find((s) => s.step === 'esso')?.summary).toMatch(/standard document obeys Apple's rules \(\d+ declaration\(s\)\)/)
      expect(report.device.essoDeclarations.length).toBeGreaterThan(0)
      expect(report.declarations.sort()).toEqual(report.device.essoDeclarations.map((d) => d.Identifier).sort())
    } finally {
      await esso.close()
    }
  }, 120_000)
})

describe('account-driven device enrollment (mdm-adde)', () => {
  // A device team: corp.example.test accounts enroll into "Fleet", set to device enrollment at start
  // (ENROLL_DEVICE_TEAMS); other domains into the Default team, user enrollment.
  let fleet: TestApp
  beforeAll(async () => {
    fleet = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ENROLL_DOMAINS: 'corp.example.test=Fleet, example.test', ENROLL_DEVICE_TEAMS: 'Fleet' }, database: strict.database })
  })
  afterAll(async () => fleet?.app.close())

  const enrollmentOf = async (id: string) => (await admin(fleet.app, 'GET', `/enrollments?enrollment_id=${encodeURIComponent(id)}`)).json().items[0]

  it('follows discovery\'s mdm-adde and says so: UDID and serial number, device-only commands acknowledged and noted', async () => {
    const uuids: Record<string, string> = {}
    const report = await run(fleet, {
      user: 'ada@corp.example.test',
      beforeCommands: async (device) => {
        const enrollment = await enrollmentOf(device.deviceId)
        for (const command of [{ RequestType: 'DeviceInformation', Queries: ['UDID', 'SerialNumber', 'OSVersion'] }, { RequestType: 'EraseDevice', PIN: '123456' }, { RequestType: 'DeviceLock' }]) {
          const queued = await admin(fleet.app, 'POST', `/enrollments/${enrollment.id}/commands`, command)
          expect(queued.statusCode, queued.body).toBe(201)
          uuids[command.RequestType] = queued.json().command_uuid
        }
      },
    })
    expect(report.diagnosis?.text).toBeUndefined()
    expect(report.enrollment).toBe('device')
    const step = (name: string) => report.steps.find((s) => s.step === name)!
    expect(step('discovery').summary).toMatch(/^mdm-adde at /)
    expect(step('discovery').notes.join('\n')).toMatch(/discovery answered mdm-adde: enrolling as account-driven device enrollment/)
    expect(step('authenticate').summary).toContain(`UDID ${report.enrollmentId}, serial number ${report.serialNumber}`)

    // What the server stored is what the simulated device said about itself.
    const enrollment = await enrollmentOf(report.enrollmentId)
    expect(enrollment).toMatchObject({ enrollment_type: 'device', status: 'active', device: { udid: report.enrollmentId, serial_number: report.serialNumber } })
    expect(report.enrollmentId).toBe(report.device.udid)
    const info = (await admin(fleet.app, 'GET', `/commands/${uuids.DeviceInformation}`)).json()
    expect(info).toMatchObject({ status: 'acknowledged', result: { QueryResponses: { UDID: report.device.udid, SerialNumber: report.device.serialNumber } } })
    expect(info.result.QueryResponses).not.toHaveProperty('EnrollmentID')
    for (const type of ['EraseDevice', 'DeviceLock']) expect((await admin(fleet.app, 'GET', `/commands/${uuids[type]}`)).json().status, type).toBe('acknowledged')
    // Noted, not done: the device is still enrolled and checks in.
    expect(report.noted).toEqual(['EraseDevice', 'DeviceLock'])
    expect(report.steps.every((s) => s.ok)).toBe(true)
    expect((await report.device.idle()).answered).toEqual([])
  }, 120_000)

  it('--enrollment device enrolls a Mac with its user channel (UserID) and checks it out', async () => {
    const report = await run(fleet, { user: 'mac@corp.example.test', enrollment: 'device', modelFamily: 'Mac', checkout: true })
    expect(report.ok, report.diagnosis?.text).toBe(true)
    expect(report.steps.find((s) => s.step === 'discovery')!.notes.join('\n')).not.toMatch(/discovery answered/)
    expect(report.steps.find((s) => s.step === 'user-channel')!.summary).toBe(`UserID ${report.device.enrollmentUserId}`)
    const enrollment = await enrollmentOf(report.enrollmentId)
    expect(enrollment).toMatchObject({ enrollment_type: 'device', status: 'checked_out', device: { udid: report.enrollmentId, serial_number: report.serialNumber } })
    expect(enrollment.channels.map((c: { type: string }) => c.type).sort()).toEqual(['device', 'user'])
  }, 120_000)

  it('--enrollment device against a user-enrollment team (and user against a device team): the diagnosis names the team setting', async () => {
    const wantDevice = await run(fleet, { user: 'bob@example.test', enrollment: 'device' })
    expect(wantDevice.steps.map((s) => [s.step, s.ok])).toEqual([['discovery', false]])
    expect(wantDevice.diagnosis).toMatchObject({ step: 'discovery', expected: expect.stringContaining('mdm-adde'), got: 'Version mdm-byod (user enrollment)' })
    expect(wantDevice.diagnosis!.fix).toMatch(/enrollment_type user: set its enrollment_type to device .* ENROLL_DEVICE_TEAMS .*; or enroll with --enrollment user/)

    const wantUser = await run(fleet, { user: 'carl@corp.example.test', enrollment: 'user' })
    expect(wantUser.diagnosis).toMatchObject({ step: 'discovery', got: 'Version mdm-adde (account-driven device enrollment)' })
    expect(wantUser.diagnosis!.fix).toMatch(/enrollment_type device: set its enrollment_type to user .* ENROLL_DEVICE_TEAMS .*; or enroll with --enrollment device/)
  })

  it('without discovery (--enroll-url) a device team\'s ADDE profile fails the user-enrollment check, naming the team setting', async () => {
    const discovered = (await fleet.app.inject('/.well-known/com.apple.remotemanagement?user-identifier=dora%40corp.example.test&model-family=iPhone')).json()
    const report = await run(fleet, { server: undefined, enrollUrl: discovered.Servers[0].BaseURL, user: 'dora@corp.example.test' })
    expect(report.diagnosis).toMatchObject({ step: 'profile' })
    expect(report.diagnosis!.got).toContain('EnrollmentMode is "ADDE" but discovery said mdm-byod (which needs BYOD)')
    expect(report.diagnosis!.fix).toMatch(/^the server built the profile for account-driven device enrollment \(EnrollmentMode ADDE\)/)
    expect(report.diagnosis!.fix).toMatch(/enrollment_type device/)
    // The same URL with --enrollment device enrolls.
    const ok = await run(fleet, { server: undefined, enrollUrl: discovered.Servers[0].BaseURL, user: 'dora@corp.example.test', enrollment: 'device' })
    expect(ok.ok, ok.diagnosis?.text).toBe(true)
  }, 120_000)

  it('load mode enrolls device-enrollment devices, each its own UDID', async () => {
    const result = await runLoad({ transport: injectTransport(fleet.app), server: TEST_SERVER_URL, domain: 'corp.example.test', devices: 2, concurrency: 2, enrollment: 'device' })
    expect(result).toMatchObject({ devices: 2, enrolled: 2, deviceEnrollments: 2, checkins: 2 })
    expect(result.steps.every((s) => Object.keys(s.errors).length === 0)).toBe(true)
    expect(formatLoadTable(result)).toMatch(/2\/2 devices enrolled \(account-driven device enrollment\)/)
    const listed = (await admin(fleet.app, 'GET', '/enrollments?limit=200')).json().items as { user: { email: string }; enrollment_type: string; device: { udid: string } }[]
    const mine = listed.filter((e) => /^user[01]@corp\.example\.test$/.test(e.user.email))
    expect(mine.map((e) => e.enrollment_type)).toEqual(['device', 'device'])
    expect(new Set(mine.map((e) => e.device.udid)).size).toBe(2)
  }, 120_000)
})

describe('command answers', () => {
  const state = (): DeviceState => ({ model: MODELS.iPhone, enrollmentId: 'E1', channel: 'device', profiles: new Map(), apps: new Map() })

  it('DeviceInformation answers what user enrollment allows and leaves out UDID and SerialNumber', () => {
    const a = answerCommand({ RequestType: 'DeviceInformation', Queries: ['OSVersion', 'UDID', 'SerialNumber', 'EnrollmentID'] }, state())
    expect(a).toMatchObject({ status: 'Acknowledged', fields: { QueryResponses: { OSVersion: '18.2.1', EnrollmentID: 'E1' } } })
    expect(Object.keys(a.fields.QueryResponses as object)).toEqual(['OSVersion', 'EnrollmentID'])
  })

  it('under device enrollment: UDID and SerialNumber, no EnrollmentID; EraseDevice acknowledged and noted, nothing erased', () => {
    const s: DeviceState = { ...state(), enrollment: 'device', udid: '00008110-0000000000000001', serialNumber: 'F2LXK0ABCDEF', noted: [] }
    s.profiles.set('p', { PayloadIdentifier: 'p', PayloadUUID: 'U', PayloadVersion: 1, PayloadContent: [] })
    const a = answerCommand({ RequestType: 'DeviceInformation', Queries: ['UDID', 'SerialNumber', 'EnrollmentID', 'OSVersion'] }, s)
    expect(a.fields.QueryResponses).toEqual({ UDID: '00008110-0000000000000001', SerialNumber: 'F2LXK0ABCDEF', OSVersion: MODELS.iPhone.osVersion })
    expect(answerCommand({ RequestType: 'EraseDevice', PIN: '123456' }, s)).toMatchObject({ status: 'Acknowledged', note: expect.stringContaining('erases nothing') })
    expect(s.noted).toEqual(['EraseDevice'])
    expect(s.profiles.size).toBe(1)
    // Still what the schema refuses for this enrollment: RestartDevice needs supervision on iOS.
    expect(answerCommand({ RequestType: 'RestartDevice' }, s)).toMatchObject({ status: 'Error', note: expect.stringMatching(/requires a supervised device on iOS/) })
  })

  it('refuses what the schema forbids under user enrollment, and unknown commands, with an ErrorChain', () => {
    expect(answerCommand({ RequestType: 'EraseDevice' }, state())).toMatchObject({ status: 'Error', fields: { ErrorChain: [{ ErrorDomain: 'MCMDMErrorDomain', ErrorCode: 12021 }] } })
    expect(answerCommand({ RequestType: 'MakeCoffee' }, state()).note).toBe('MakeCoffee: Error (unknown RequestType)')
    expect(answerCommand({ RequestType: 'RemoveProfile' }, state()).status).toBe('CommandFormatError')
  })

  it('keeps profiles and apps: InstallProfile shows in ProfileList until RemoveProfile; InstallApplication in InstalledApplicationList', () => {
    const s = state()
    const profile = Buffer.from('<?xml version="1.0"?><plist version="1.0"><dict><key>PayloadType</key><string>Configuration</string><key>PayloadIdentifier</key><string>com.example.wifi</string><key>PayloadUUID</key><string>U</string><key>PayloadContent</key><array/></dict></plist>')
    expect(answerCommand({ RequestType: 'InstallProfile', Payload: new Uint8Array(profile) }, s).status).toBe('Acknowledged')
    expect((answerCommand({ RequestType: 'ProfileList' }, s).fields.ProfileList as { PayloadIdentifier: string }[]).map((p) => p.PayloadIdentifier)).toEqual(['com.example.wifi'])
    expect(answerCommand({ RequestType: 'RemoveProfile', Identifier: 'com.example.wifi' }, s).status).toBe('Acknowledged')
    expect(answerCommand({ RequestType: 'RemoveProfile', Identifier: 'com.example.wifi' }, s).status).toBe('Error')
    answerCommand({ RequestType: 'InstallApplication', Identifier: 'com.example.app' }, s)
    expect(answerCommand({ RequestType: 'InstalledApplicationList', ManagedAppsOnly: true }, s).fields.InstalledApplicationList).toEqual([expect.objectContaining({ Identifier: 'com.example.app' })])
    expect(answerCommand({ RequestType: 'ProfileList' }, s, { notNow: true }).status).toBe('NotNow')
  })
})

describe('load mode', () => {
  it('enrolls N devices C at a time, checks them in, and counts every step; errors are counted by kind', async () => {
    const progress: string[] = []
    const result = await runLoad({ transport: injectTransport(strict.app), server: TEST_SERVER_URL, domain: 'load.example.test', devices: 3, concurrency: 2, onProgress: (p) => progress.push(p.phase) })
    expect(result).toMatchObject({ devices: 3, enrolled: 3, checkins: 3 })
    const steps = Object.fromEntries(result.steps.map((s) => [s.step, s]))
    for (const step of ['discovery', 'enroll-challenge', 'sign-in', 'enroll', 'profile', 'scep', 'authenticate', 'token-update', 'enrollment', 'commands']) {
      expect(steps[step], step).toMatchObject({ count: 3, errors: {} })
      expect(steps[step]!.p50).toBeLessThanOrEqual(steps[step]!.p99)
    }
    expect(progress).toContain('enroll')
    expect(progress).toContain('check-in')
    const table = formatLoadTable(result)
    expect(table.split('\n')[0]).toMatch(/^\| step\s+\| count \| errors \| p50 ms \| p95 ms \| p99 ms \| per s \|$/)
    expect(table).toMatch(/3\/3 devices enrolled/)

    const refused = await runLoad({ transport: injectTransport(strict.app), enrollUrl: `${TEST_SERVER_URL}/api/mdm/apple/enroll/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`, domain: 'load.example.test', devices: 2, concurrency: 2 })
    expect(refused.enrolled).toBe(0)
    expect(refused.steps.find((s) => s.step === 'enroll-challenge')).toMatchObject({ count: 2, errors: { '404': 2 } })
    expect(formatLoadTable(refused)).toMatch(/\| enroll-challenge \|\s+2 \| 2 × 404/)
  })
})
