/**
 * The plist fast path (protocol/plist.ts `readSimplePlist`) against the full path (scanXml and the XML
 * parser): on the plists devices send, and on mutations of them, the two give the same value or both
 * refuse. The fast path only decides what it reads completely; everything else takes the full path.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { buildPlist, parsePlist, parsePlistWithXmlParser, takesFastPath, type PlistValue } from '../../src/protocol/plist.js'
import { fixtureText } from '../helpers/fixtures.js'

const FIXTURES = ['checkin.authenticate.ios18.plist', 'checkin.token-update.ios18.plist', 'command.idle.ios18.plist']

type Outcome = { ok: true; value: PlistValue } | { ok: false; error: string }

function outcome(parse: () => PlistValue): Outcome {
  try {
    return { ok: true, value: parse() }
  } catch (err) {
    // Both paths refuse with PlistError (400 invalid_plist); the wording may differ.
    expect((err as { code?: string }).code, String(err)).toBe('invalid_plist')
    return { ok: false, error: (err as Error).message }
  }
}

function same(xml: string): void {
  const fast = outcome(() => parsePlist(xml))
  const full = outcome(() => parsePlistWithXmlParser(xml))
  expect(fast.ok, `fast ${JSON.stringify(fast)} / full ${JSON.stringify(full)} for ${JSON.stringify(xml)}`).toBe(full.ok)
  if (fast.ok && full.ok) expect(fast.value).toEqual(full.value)
}

const leaf = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: fc.constantFrom('a', '<', '>', '&', '"', "'", ' ', '\t', '\n', 'é', '\u{1F600}'), maxLength: 12 }),
  fc.integer(),
  fc.boolean(),
  fc.date({ min: new Date('2001-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => new Date(Math.floor(d.getTime() / 1000) * 1000)),
  fc.uint8Array({ maxLength: 24 }),
)
const value: fc.Arbitrary<PlistValue> = fc.letrec<{ v: PlistValue }>((tie) => ({
  v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => !['__proto__', 'constructor', 'prototype'].includes(k)), tie('v'), { maxKeys: 4 })),
})).v

const mutate = (xml: string) =>
  fc.tuple(fc.nat(), fc.constantFrom('', '<', '>', '&', '&amp;', '&#0;', '&#x41;', ';', '/', '"', ' ', '\r', '\n', '\u0000', 'a', '<dict>', '</dict>', '<key>', '<!-- c -->', '<![CDATA[x]]>', ']]>', '<true/>', '\u00a0'), fc.nat({ max: 3 })).map(([at, insert, cut]) => {
    const i = at % (xml.length + 1)
    return xml.slice(0, i) + insert + xml.slice(Math.min(xml.length, i + cut))
  })

describe('the plist fast path', () => {
  it('reads the plists devices send (the recorded iOS 18 check-ins and reports) as the XML parser does', () => {
    for (const name of FIXTURES) {
      const xml = fixtureText(name)
      expect(takesFastPath(xml), name).toBe(true)
      same(xml)
    }
  })

  it('reads what buildPlist writes as the XML parser does, and takes the fast path for it', () => {
    fc.assert(
      fc.property(value, (v) => {
        const xml = buildPlist(v)
        expect(takesFastPath(xml)).toBe(true)
        same(xml)
      }),
      { numRuns: 300 },
    )
  })

  it('agrees with the XML parser on mutations of valid plists: the same value, or both refuse', () => {
    const bases = [...FIXTURES.map((n) => fixtureText(n)), buildPlist({ a: [1, 'x', { b: true }], c: new Uint8Array([1, 2, 3]) })]
    fc.assert(
      fc.property(fc.constantFrom(...bases).chain((xml) => fc.array(fc.constant(null), { minLength: 1, maxLength: 3 }).chain((n) => n.reduce((arb) => arb.chain(mutate), fc.constant(xml)))), (xml) => same(xml)),
      { numRuns: 2000 },
    )
  })

  it('leaves nesting past the bound, comments, CDATA and character references to the full path, which decides', () => {
    const deep = `<plist version="1.0">${'<array>'.repeat(40)}${'</array>'.repeat(40)}</plist>`
    expect(takesFastPath(deep)).toBe(false)
    same(deep)
    for (const xml of ['<plist><string>a<!-- c -->b</string></plist>', '<plist><string><![CDATA[<x>]]></string></plist>', '<plist><string>&#65;</string></plist>', '<plist><string>a\r\nb</string></plist>']) {
      expect(takesFastPath(xml), xml).toBe(false)
      same(xml)
    }
  })
})
