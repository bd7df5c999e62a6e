/**
 * Property-based fuzzing of the plist reader (src/protocol/plist.ts) and the check-in / command-report
 * parsers built on it (src/protocol/checkin.ts): SECURITY.md rows 1-5 and 25 as properties. Inputs are
 * mutations of recorded device plists (byte flips, inserts, deletes, truncations, and splices of the
 * tokens that matter: DOCTYPE and entities, binary plist magic, prototype keys, deep nesting,
 * namespaces), plus random plist values built and read back. Every input is read or refused with a
 * PlistError/CheckinFormatError (a 400) within a bounded time; nothing else is thrown and
 * Object.prototype is untouched.
 */
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { AppError } from '../../src/errors.js'
import { buildCommandReport, parseCheckin, parseCommandReport } from '../../src/protocol/checkin.js'
import { buildPlist, parsePlist, type PlistValue } from '../../src/protocol/plist.js'
import { fixtureBytes } from '../helpers/fixtures.js'
import { applyAll, classify, hex, kinds, mutationsArb, runs, Tally } from './fuzz.js'

const refusal = (err: unknown) => err instanceof AppError && err.status === 400

const TOKENS = [
  '<!DOCTYPE plist [<!ENTITY a "aaaaaaaaaa">]>',
  '<!DOCTYPE x SYSTEM "http://127.0.0.1:1/evil.dtd">',
  '<!ENTITY b SYSTEM "file:///etc/passwd">',
  '&a;',
  '&b;',
  'bplist00',
  '<key>__proto__</key><dict><key>polluted</key><true/></dict>',
  '<key>constructor</key><dict/>',
  '<key>prototype</key><string>x</string>',
  '<dict>'.repeat(40),
  '<array>'.repeat(40),
  '</dict>',
  '</plist>',
  '<![CDATA[x]]>',
  '<?xml version="1.0"?>',
  '<!-- c -->',
  '\u0000',
  '\uFEFF',
  '\u00e9\u{1F600}',
  '<integer>99999999999999999999</integer>',
  '<integer>-0x1</integer>',
  '<real>1e999</real>',
  '<date>2024-13-45T25:61:00Z</date>',
  '<data>!!!=</data>',
  '<key>MessageType</key><string>Authenticate</string>',
  '<key>MessageType</key><integer>1</integer>',
  '<key>EnrollmentID</key><string>x</string>',
  ' xmlns:a="urn:x"',
  '<a:b xmlns:a="urn:y"/>',
  '&#0;',
  '&#x110000;',
  '&lt;&amp;',
  ' version="1.0" version="2"',
]

const fixtures = {
  authenticate: fixtureBytes('checkin.authenticate.ios18.plist'),
  tokenUpdate: fixtureBytes('checkin.token-update.ios18.plist'),
  idle: fixtureBytes('command.idle.ios18.plist'),
  errorReport: buildCommandReport({
    EnrollmentID: 'FB833D84-50C0-41DD-99DE-F748E44FFEF5',
    Status: 'Error',
    CommandUUID: '0f0e1d2c-3b4a-5968-7786-95a4b3c2d1e0',
    ErrorChain: [{ ErrorCode: 12021, ErrorDomain: 'MCMDMErrorDomain', LocalizedDescription: 'Unknown command' }],
  }),
  rich: Buffer.from(buildPlist({ a: [1, -2, 3.5, true, false, 'x'], d: new Date('2026-01-02T03:04:05Z'), b: new Uint8Array([1, 2, 3]), n: { m: { o: ['deep'] } } }), 'utf8'),
}

const parsers: Record<string, (b: Uint8Array) => unknown> = {
  plist: (b) => parsePlist(b),
  checkin: (b) => parseCheckin(b),
  'command report': (b) => parseCommandReport(b),
}

const tallies: Record<string, Tally> = {}
const tally = (name: string) => (tallies[name] ??= new Tally())

afterAll(() => {
  for (const [name, t] of Object.entries(tallies)) t.record(`fuzz: ${name}`)
})

describe('plist readers on mutated device plists', () => {
  for (const [parser, parse] of Object.entries(parsers)) {
    it(`${parser}: every mutation is read or refused with a 400, in bounded time`, () => {
      const t = tally(parser === 'plist' ? 'plist' : `plist ${parser}`)
      fc.assert(
        fc.property(fc.constantFrom(...Object.keys(fixtures)), mutationsArb({ tokens: TOKENS }), (name, mutations) => {
          const input = applyAll(fixtures[name as keyof typeof fixtures], mutations)
          classify(t, () => parse(input), refusal, () => `${name} ${kinds(mutations)} ${hex(input)}`)
        }),
        { numRuns: runs(400) },
      )
      expect(t.failures).toBe('')
      expect(Object.prototype).not.toHaveProperty('polluted')
      // Mutations must also be refused: a reader that accepts everything would pass the lines above.
      expect(t.refused).toBeGreaterThan(t.inputs / 4)
    })
  }

  it('the same parsers given the input as a string (the route reads bytes, the simulator strings)', () => {
    const t = tally('plist (string input)')
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(fixtures)), mutationsArb({ tokens: TOKENS }), (name, mutations) => {
        const input = applyAll(fixtures[name as keyof typeof fixtures], mutations).toString('latin1')
        classify(t, () => parsePlist(input), refusal, () => `${name} ${kinds(mutations)} ${JSON.stringify(input.slice(0, 200))}`)
      }),
      { numRuns: runs(200) },
    )
    expect(t.failures).toBe('')
  })
})

/** Plist values our own writer can express, with keys the reader accepts. */
const value: fc.Arbitrary<PlistValue> = fc.letrec<{ v: PlistValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.string({ maxLength: 40 }),
    fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    fc.boolean(),
    fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e12, max: 1e12 }).filter((d) => !Number.isInteger(d)),
    fc.date({ min: new Date('1971-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => new Date(Math.floor(d.getTime() / 1000) * 1000)),
    fc.uint8Array({ maxLength: 32 }),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !['__proto__', 'constructor', 'prototype'].includes(k)), tie('v'), { maxKeys: 4 }),
  ),
})).v

describe('random plist values', () => {
  it('what our writer builds, the reader reads back unchanged (no false refusals)', () => {
    const t = tally('plist round trip')
    fc.assert(
      fc.property(value, (v) => {
        const xml = Buffer.from(buildPlist(v), 'utf8')
        const result = classify(t, () => parsePlist(xml), refusal, () => xml.toString('utf8').slice(0, 400))
        if (result.ok) expect(normalise(result.value)).toEqual(normalise(v))
      }),
      { numRuns: runs(300) },
    )
    expect(t.failures).toBe('')
    expect(t.refused).toBe(0)
  })

  it('check-in messages built from random field values are read or refused with a 400, never thrown otherwise', () => {
    const t = tally('plist checkin (random fields)')
    const messageType = fc.constantFrom('Authenticate', 'TokenUpdate', 'CheckOut', 'DeclarativeManagement', 'GetToken', 'UserAuthenticate', 'Unknown', '')
    fc.assert(
      fc.property(messageType, fc.dictionary(fc.constantFrom('UDID', 'EnrollmentID', 'Topic', 'Token', 'PushMagic', 'UnlockToken', 'EnrollmentUserID', 'UserShortName', 'Endpoint', 'Data', 'TokenServiceType'), value, { maxKeys: 6 }), (type, fields) => {
        const xml = Buffer.from(buildPlist({ ...fields, MessageType: type }), 'utf8')
        classify(t, () => parseCheckin(xml), refusal, () => xml.toString('utf8').slice(0, 400))
      }),
      { numRuns: runs(300) },
    )
    expect(t.failures).toBe('')
  })
})

/** Uint8Array vs Buffer, and dates, compared by value. */
function normalise(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('hex') }
  if (v instanceof Date) return { date: v.getTime() }
  if (Array.isArray(v)) return v.map(normalise)
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalise(x)]))
  return v
}
