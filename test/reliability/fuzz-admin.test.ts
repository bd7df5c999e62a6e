/**
 * The admin API's JSON fuzzed through the real app and database (SECURITY.md rows 4, 5, 29): random JSON,
 * mutations of valid bodies for four endpoints (create and rename a team, queue a command for one
 * enrollment, for many), well-formed bodies with random field values, prototype keys and deep nesting.
 * Every input gets a 2xx or a 4xx `{error, message}` in bounded time, never a 5xx; Object.prototype is
 * untouched.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { activeDevice } from '../helpers/device.js'
import { applyAll, classifyResponse, FILE_TIMEOUT, kinds, mutationsArb, runs, Tally } from './fuzz.js'

let t: TestApp
const x = new Tally()

beforeAll(async () => {
  t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ADMIN_RATE_LIMIT: '1000000' } })
}, 120_000)
afterAll(async () => {
  x.record('fuzz: HTTP admin API JSON')
  await t?.close()
})

describe('admin API JSON', () => {
  const send = (method: 'POST' | 'PATCH', url: string, payload: string | Buffer) =>
    t.app.inject({ method, url: `/api/v1/admin${url}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, payload })

  it('random JSON, mutated valid bodies, prototype keys and deep nesting: a 2xx or a 4xx {error, message}, never a 5xx', async () => {
    const device = await activeDevice(t.app)
    const enrollment = (await t.app.inject({ url: `/api/v1/admin/enrollments?enrollment_id=${device.enrollmentId}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json().items[0].id as string
    const team = (await send('POST', '/teams', JSON.stringify({ name: 'Fuzzed team' }))).json().id as string
    const targets: [method: 'POST' | 'PATCH', url: string, valid: unknown][] = [
      ['POST', '/teams', { name: 'Engineering', auth_method: 'saml', enrollment_type: 'user' }],
      ['PATCH', `/teams/${team}`, { name: 'Renamed' }],
      ['POST', `/enrollments/${enrollment}/commands`, { RequestType: 'DeviceInformation', Queries: ['OSVersion'] }],
      ['POST', '/commands', { enrollment_ids: [enrollment], command: { RequestType: 'ProfileList' } }],
    ]
    const deep = (n: number) => '['.repeat(n) + ']'.repeat(n)
    const TOKENS = ['{"__proto__":{"polluted":true}}', '"constructor":{"prototype":{"polluted":true}}', deep(5000), '\u0000', '1e999', '-0', '"\ud800"', ',', '}', '"name":']
    const body = fc.oneof(
      fc.json({ maxDepth: 4 }).map((j) => ({ label: 'random json', bytes: Buffer.from(j) })),
      fc.tuple(fc.nat(targets.length - 1), mutationsArb({ tokens: TOKENS })).map(([i, m]) => ({ label: `${i} ${kinds(m)}`, bytes: applyAll(Buffer.from(JSON.stringify(targets[i]![2])), m), target: i })),
      // Well-formed bodies with random field values: what the schemas, not the JSON parser, must refuse.
      fc
        .record({ name: fc.oneof(fc.string({ maxLength: 300 }), fc.integer(), fc.constant(null)), auth_method: fc.constantFrom('saml', 'oauth2', null, 'ldap', ''), enrollment_type: fc.constantFrom('user', 'device', 'x') }, { requiredKeys: [] })
        .chain((team) => fc.constantFrom({ label: 'team fields', bytes: Buffer.from(JSON.stringify(team)), target: 0 }, { label: 'team fields', bytes: Buffer.from(JSON.stringify(team)), target: 1 })),
      fc
        .record({ RequestType: fc.constantFrom('DeviceInformation', 'ProfileList', 'EraseDevice', 'InstallProfile', 'RemoveProfile', 'Settings', 'x'), Queries: fc.array(fc.string({ maxLength: 20 }), { maxLength: 3 }), Payload: fc.uint8Array({ maxLength: 8 }).map((u) => Buffer.from(u).toString('base64')), Identifier: fc.string({ maxLength: 20 }) }, { requiredKeys: ['RequestType'] })
        .map((command) => ({ label: 'command fields', bytes: Buffer.from(JSON.stringify(command)), target: 2 })),
      fc.nat(targets.length - 1).map((i) => ({ label: 'prototype keys', bytes: Buffer.from(`{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},${JSON.stringify(targets[i]![2]).slice(1)}`), target: i })),
    )
    await fc.assert(
      fc.asyncProperty(fc.nat(targets.length - 1), body, async (i, b) => {
        const [method, url] = targets['target' in b && b.target !== undefined ? b.target : i]!
        const res = await classifyResponse(x, () => send(method, url, b.bytes), () => `${method} ${url} ${b.label} ${b.bytes.toString('latin1').slice(0, 160)}`)
        if (res && res.statusCode >= 400 && res.statusCode < 500) expect(Object.keys(res.json()).sort()).toEqual(['error', 'message'])
      }),
      { numRuns: runs(300) },
    )
    expect(x.failures).toBe('')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.prototype).not.toHaveProperty('polluted')
  }, FILE_TIMEOUT)
})
