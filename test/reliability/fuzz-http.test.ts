/**
 * The device-facing endpoints fuzzed through the real app and database (SECURITY.md rows 1-7, 18, 19,
 * 29): the discovery query, the enroll body, check-in and command-report bodies with their
 * Mdm-Signature, SCEP PKIOperation and GET. Inputs are mutations of valid requests (the recorded enroll
 * body, a device's signed plists, a pkiMessage with a live challenge) and random values. Every input
 * gets a 2xx or a clear 4xx in bounded time, never a 5xx or a crash; refused enroll requests write
 * nothing; the check-in channel never answers 401; a mutated pkiMessage issues at most the one
 * certificate its challenge allows. The admin API's JSON: fuzz-admin.test.ts.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { activeDevice, COMMAND, type Device } from '../helpers/device.js'
import { enrollBody, postEnroll, signIn, writtenRows } from '../helpers/enroll.js'
import { createEnrollment, postPkiOperation, rsaKeys, scepRequest, SCEP_PATH } from '../helpers/scep.js'
import { applyAll, classifyResponse, derLengthOffsets, FILE_TIMEOUT, kinds, mutationArb, mutationsArb, runs, Tally } from './fuzz.js'

let t: TestApp
const tallies: Record<string, Tally> = {}
const tally = (name: string) => (tallies[name] ??= new Tally())
const extra: Record<string, Record<string, number>> = {}

beforeAll(async () => {
  t = await buildTestApp()
}, 120_000)
afterAll(async () => {
  for (const [name, x] of Object.entries(tallies)) x.record(`fuzz: ${name}`, extra[name] ?? {})
  await t?.close()
})

/** Bytes a URL cannot carry as they are, percent-encoded; `%` is left alone so broken escapes stay broken. */
const urlSafe = (bytes: Buffer) => [...bytes].map((b) => (b > 0x20 && b < 0x7f && b !== 0x23 ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`)).join('')

describe('service discovery query', () => {
  it('random and mutated queries: 200 or a 4xx JSON answer, never a 5xx', async () => {
    const x = tally('HTTP discovery query')
    const valid = Buffer.from('user-identifier=alice%40example.com&model-family=iPhone', 'latin1')
    const identifier = fc.oneof(fc.emailAddress(), fc.string({ unit: 'grapheme', maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constant('a'.repeat(5000) + '@example.com'))
    const random = fc
      .tuple(fc.option(identifier), fc.option(fc.oneof(fc.constantFrom('iPhone', 'iPad', 'Mac', 'AppleTV', 'Watch', 'RealityDevice', ''), fc.string())), fc.boolean())
      .map(([id, family, twice]) => {
        const q = new URLSearchParams()
        if (id !== null) q.append('user-identifier', id)
        if (twice && id !== null) q.append('user-identifier', 'bob@example.com')
        if (family !== null) q.append('model-family', family)
        return { label: 'random', query: q.toString() }
      })
    const mutated = mutationsArb({ tokens: ['&', '=', '%', '%ZZ', '%00', '&user-identifier=', '[]', '__proto__=1'] }).map((m) => ({ label: kinds(m), query: urlSafe(applyAll(valid, m)) }))
    await fc.assert(
      fc.asyncProperty(fc.oneof(random, mutated), async ({ label, query }) => {
        const res = await classifyResponse(x, () => t.app.inject({ url: `/.well-known/com.apple.remotemanagement?${query}` }), () => `${label} ${query.slice(0, 200)}`)
        if (res && res.statusCode < 500) expect(String(res.headers['content-type'])).toMatch(/^application\/json/)
      }),
      { numRuns: runs(150, 4000) },
    )
    expect(x.failures).toBe('')
  }, FILE_TIMEOUT)
})

describe('enroll body', () => {
  it('mutated device-signed bodies with a valid token: 200 or a 4xx, and refusals write nothing', async () => {
    const x = tally('HTTP enroll body')
    const offsets = derLengthOffsets(enrollBody)
    let refusedWrote = 0
    await fc.assert(
      fc.asyncProperty(fc.array(mutationArb({ derOffsets: offsets }), { minLength: 1, maxLength: 3 }), async (mutations) => {
        const { token } = await signIn(t.app)
        const body = applyAll(enrollBody, mutations)
        const before = await writtenRows(t.app)
        const res = await classifyResponse(x, () => postEnroll(t.app, { body, token }), () => `${kinds(mutations)} ${body.toString('hex').slice(0, 160)}`)
        if (res && res.statusCode >= 400 && JSON.stringify(await writtenRows(t.app)) !== JSON.stringify(before)) refusedWrote++
      }),
      { numRuns: runs(100, 2000) },
    )
    extra['HTTP enroll body'] = { 'refused that wrote': refusedWrote }
    // The unmutated body with a fresh token gets a profile: the fuzzer starts from a valid request.
    expect((await postEnroll(t.app, { body: enrollBody, token: (await signIn(t.app)).token })).statusCode).toBe(200)
    expect(x.failures).toBe('')
    expect(refusedWrote).toBe(0)
    expect(x.refused).toBeGreaterThan(x.inputs / 2)
  }, FILE_TIMEOUT)
})

describe('check-in and command channel', () => {
  let device: Device
  beforeAll(async () => {
    device = await activeDevice(t.app)
  }, 60_000)

  it('mutated plists, correctly signed by the enrolled device: 200 or a 4xx, never 401 or 5xx', async () => {
    const x = tally('HTTP check-in body (signed)')
    const bodies = [
      { body: device.body('token-update'), contentType: undefined },
      { body: device.body('idle'), contentType: COMMAND },
      { body: device.message({ MessageType: 'DeclarativeManagement', Endpoint: 'status', Data: new Uint8Array(Buffer.from('{"StatusItems":{}}')) }), contentType: undefined },
    ]
    const statuses = new Map<number, number>()
    await fc.assert(
      fc.asyncProperty(fc.nat(bodies.length - 1), mutationsArb({ tokens: ['<!DOCTYPE x [<!ENTITY a "b">]>', '&a;', 'bplist00', '<key>__proto__</key><string/>', '<dict>'.repeat(50)] }), async (which, mutations) => {
        const body = applyAll(bodies[which]!.body, mutations)
        const res = await classifyResponse(x, () => device.put(body, { contentType: bodies[which]!.contentType }), () => `${which} ${kinds(mutations)} ${body.toString('latin1').slice(0, 200)}`)
        if (res) statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      }),
      { numRuns: runs(200, 5000) },
    )
    expect(x.failures).toBe('')
    // PROTOCOL.md section 4: the check-in channel never answers 401 for what it cannot read.
    expect(statuses.get(401) ?? 0).toBe(0)
    expect(Object.prototype).not.toHaveProperty('polluted')
  }, FILE_TIMEOUT)

  it('mutated Mdm-Signature over an intact body: refused with 400/403, never accepted as another signer', async () => {
    const x = tally('HTTP check-in Mdm-Signature')
    const body = device.body('idle')
    const signature = Buffer.from(device.sign(body), 'base64')
    const offsets = derLengthOffsets(signature)
    const statuses = new Map<number, number>()
    await fc.assert(
      fc.asyncProperty(fc.array(mutationArb({ derOffsets: offsets }), { minLength: 1, maxLength: 2 }), async (mutations) => {
        const mutated = applyAll(signature, mutations).toString('base64')
        const res = await classifyResponse(x, () => device.put(body, { contentType: COMMAND, signature: mutated }), () => kinds(mutations))
        if (res) statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      }),
      { numRuns: runs(200, 5000) },
    )
    expect(x.failures).toBe('')
    expect(statuses.get(401) ?? 0).toBe(0)
    expect([...statuses.keys()].every((s) => s === 200 || s === 400 || s === 403), JSON.stringify([...statuses])).toBe(true)
    // The unmutated signature is accepted: what was refused was refused for the mutation.
    expect((await device.put(body, { contentType: COMMAND, signature: signature.toString('base64') })).statusCode).toBe(200)
  }, FILE_TIMEOUT)
})

describe('SCEP PKIOperation', () => {
  it('mutated pkiMessages with a live challenge: a CertRep or a 400, at most one certificate for the challenge', async () => {
    const x = tally('HTTP SCEP PKIOperation')
    const enrollment = await createEnrollment(t.app)
    const { id, challenge } = await enrollment.challenge()
    const request = scepRequest(t.app, { challenge, keys: rsaKeys() })
    const offsets = derLengthOffsets(request.der)
    await fc.assert(
      fc.asyncProperty(fc.array(mutationArb({ derOffsets: offsets }), { minLength: 1, maxLength: 3 }), async (mutations) => {
        const der = applyAll(request.der, mutations)
        const res = await classifyResponse(x, () => postPkiOperation(t.app, der), () => `${kinds(mutations)} ${der.toString('hex').slice(0, 160)}`)
        if (res && res.statusCode === 200) expect(res.headers['content-type']).toBe('application/x-pki-message')
      }),
      { numRuns: runs(200) },
    )
    // The unmutated message is valid: the fuzzer starts from a request the server answers with a CertRep.
    const original = await postPkiOperation(t.app, request.der)
    expect(original.statusCode).toBe(200)
    const issued = await t.app.db.prisma.deviceCertificate.count({ where: { scepChallengeId: id } })
    extra['HTTP SCEP PKIOperation'] = { 'certificates issued': issued }
    expect(x.failures).toBe('')
    expect(issued).toBeLessThanOrEqual(1)
  }, FILE_TIMEOUT)

  it('PKIOperation by GET (the message Base64 in the query), mutated: a CertRep or a 400, never a 5xx', async () => {
    const x = tally('HTTP SCEP PKIOperation (GET)')
    const enrollment = await createEnrollment(t.app)
    const { id, challenge } = await enrollment.challenge()
    const request = scepRequest(t.app, { challenge, keys: rsaKeys() })
    const offsets = derLengthOffsets(request.der)
    await fc.assert(
      fc.asyncProperty(fc.array(mutationArb({ derOffsets: offsets }), { minLength: 1, maxLength: 3 }), fc.boolean(), async (mutations, mangleText) => {
        let message = applyAll(request.der, mutations).toString('base64')
        // Sometimes the Base64 text itself: URL-safe letters, a cut, a stray character.
        if (mangleText) message = message.replaceAll('+', '-').slice(0, Math.max(1, message.length - (mutations.length * 7) % 13)) + (mutations.length > 1 ? '%' : '')
        const url = `${SCEP_PATH}?operation=PKIOperation&message=${encodeURIComponent(message)}`
        await classifyResponse(x, () => t.app.inject({ url }), () => `${kinds(mutations)} text=${mangleText}`)
      }),
      { numRuns: runs(100, 2000) },
    )
    expect(x.failures).toBe('')
    // The unmutated message by GET is valid (the fuzzer starts from a request the server answers with a
    // CertRep), and the challenge still yields at most one certificate.
    const original = await t.app.inject({ url: `${SCEP_PATH}?operation=PKIOperation&message=${encodeURIComponent(request.der.toString('base64'))}` })
    expect(original.statusCode).toBe(200)
    expect(original.headers['content-type']).toBe('application/x-pki-message')
    expect(await t.app.db.prisma.deviceCertificate.count({ where: { scepChallengeId: id } })).toBeLessThanOrEqual(1)
  }, FILE_TIMEOUT)

  it('GET with random operations and messages: an answer, never a 5xx', async () => {
    const x = tally('HTTP SCEP GET')
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('GetCACert', 'GetCACaps', 'PKIOperation', 'GetNextCACert', '', 'x'), fc.option(fc.oneof(fc.base64String({ maxLength: 200 }), fc.string({ maxLength: 50 }))), async (operation, message) => {
        const q = new URLSearchParams({ operation })
        if (message !== null) q.set('message', message)
        await classifyResponse(x, () => t.app.inject({ url: `${SCEP_PATH}?${q}` }), () => q.toString())
      }),
      { numRuns: runs(150) },
    )
    expect(x.failures).toBe('')
  })
})
