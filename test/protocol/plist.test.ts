import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { buildPlist, parsePlist, parsePlistDict, parsePlistWithXmlParser, PlistError } from '../../src/protocol/plist.js'
import { fixtureBytes } from '../helpers/fixtures.js'
import {
  attributedElements,
  attributeHeavy,
  fastestOfEach,
  fill,
  hiddenDepth,
  namespaceDeclarations,
  namespacePerLevel,
  ordinaryDicts,
  wideElements,
} from '../helpers/hostile-xml.js'

const wrap = (inner: string) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">${inner}</plist>`

describe('parsePlist', () => {
  it('reads the recorded check-in messages', () => {
    const auth = parsePlistDict(fixtureBytes('checkin.authenticate.ios18.plist'))
    expect(auth.MessageType).toBe('Authenticate')
    expect(typeof auth.EnrollmentID).toBe('string')
    expect(auth.UDID).toBeUndefined()
    const update = parsePlistDict(fixtureBytes('checkin.token-update.ios18.plist'))
    expect(update.MessageType).toBe('TokenUpdate')
    expect(update.Token).toBeInstanceOf(Uint8Array)
    expect(parsePlistDict(fixtureBytes('command.idle.ios18.plist')).Status).toBe('Idle')
  })

  it('round-trips what buildPlist writes', () => {
    const value = { a: 'x', b: 1, c: true, d: new Uint8Array([1, 2, 3]), e: [{ f: 'g' }] }
    const back = parsePlistDict(buildPlist(value))
    expect(back).toEqual(value)
  })

  const rejects: [string, string | Uint8Array, RegExp][] = [
    ['binary plist', Buffer.concat([Buffer.from('bplist00'), Buffer.alloc(40)]), /binary plists/],
    ['OpenStep text', '{ a = b; }', /not an XML property list/],
    ['JSON', '{"a":1}', /not an XML property list/],
    ['truncated XML', wrap('<dict><key>a</key><string>b</string>').slice(0, -20), /truncated|malformed|unbalanced/],
    ['billion laughs', `<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><plist><string>&b;</string></plist>`, /DOCTYPE/],
    ['SYSTEM entity', `<?xml version="1.0"?><!DOCTYPE plist SYSTEM "http://127.0.0.1:1/x.dtd"><plist><string>x</string></plist>`, /DOCTYPE/],
    ['stray entity declaration', `<?xml version="1.0"?><!ENTITY x "y"><plist><string>&x;</string></plist>`, /entities/],
    ['processing instruction', `<?xml version="1.0"?><?xml-stylesheet href="x"?><plist><string>x</string></plist>`, /processing instructions/],
    ['__proto__ key', wrap('<dict><key>__proto__</key><dict><key>polluted</key><true/></dict></dict>'), /not allowed/],
    ['constructor key', wrap('<dict><key>constructor</key><string>x</string></dict>'), /not allowed/],
    ['duplicate key', wrap('<dict><key>MessageType</key><string>Authenticate</string><key>MessageType</key><string>CheckOut</string></dict>'), /duplicate key/],
    ['duplicate key, entity-encoded', wrap('<dict><key>a</key><string>1</string><key>&#97;</key><string>2</string></dict>'), /duplicate key/],
    ['10,000-deep nesting', wrap('<array>'.repeat(10_000) + '</array>'.repeat(10_000)), /nested deeper/],
    ['deep nesting hidden from a text scan by attributes', wrap('<array a="/>">'.repeat(20_000) + '</array>'.repeat(20_000)), /nested deeper/],
    ['33 levels with attributes', wrap('<array a="/>">'.repeat(33) + '</array>'.repeat(33)), /nested deeper/],
    ['NUL character reference', wrap('<dict><key>a</key><string>X&#0;Y</string></dict>'), /control character/],
    ['control character in a key', wrap('<dict><key>a&#1;</key><string>x</string></dict>'), /control character/],
    ['huge integer', wrap('<integer>123456789012345678901234567890</integer>'), /integer out of range/],
    ['invalid UTF-8', Buffer.from([0x3c, 0x3f, 0x78, 0x6d, 0x6c, 0x20, 0xff, 0xfe]), /UTF-8/],
    ['empty', '', /empty/],
  ]
  it.each(rejects)('rejects %s with a PlistError (400)', (_name, input, message) => {
    let caught: unknown
    try {
      parsePlist(input)
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(PlistError)
    expect((caught as PlistError).status).toBe(400)
    expect((caught as Error).message).toMatch(message)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('rejects bodies over the size limit before parsing', () => {
    expect(() => parsePlist(wrap(`<string>${'a'.repeat(2000)}</string>`), { maxBytes: 1000 })).toThrow(/larger than 1000 bytes/)
  })

  it('throws only PlistError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.string({ maxLength: 200 }).map((s) => wrap(s))), (text) => {
        try {
          parsePlist(text)
        } catch (err) {
          expect(err).toBeInstanceOf(PlistError)
        }
      }),
      { numRuns: 3000 },
    )
  })
})

describe('parsePlist on hostile shapes of 1 MiB (SECURITY.md row 25)', () => {
  // The normal case: a 1 MiB plist of ordinary dicts, parsed in full in the same test.
  const MAX = 1024 * 1024
  const body = (inner: (bytes: number) => string) => {
    const xml = wrap(inner(MAX - wrap('').length))
    expect(Buffer.byteLength(xml)).toBeLessThanOrEqual(MAX)
    expect(Buffer.byteLength(xml)).toBeGreaterThan(0.9 * MAX)
    return xml
  }
  const normal = body((n) => ordinaryDicts(n))
  // The reference: the ordinary plist through the XML parser (the plists devices send take the fast path,
  // which is faster still; the bound is about what the XML parser does with hostile shapes).
  const normalThroughXmlParser = () => parsePlistWithXmlParser(normal)

  /** Parses, returning the PlistError (or undefined); anything else is a failure. */
  const attempt = (xml: string): PlistError | undefined => {
    try {
      parsePlist(xml)
      return undefined
    } catch (err) {
      if (err instanceof PlistError) return err
      throw err
    }
  }

  const refused: [string, (bytes: number) => string, RegExp][] = [
    ['a new namespace prefix per nesting level', (n) => namespacePerLevel(n), /namespaces|nested deeper/],
    ['a new namespace per level on unprefixed elements', (n) => namespacePerLevel(n, { prefixed: false }), /namespaces|nested deeper/],
    ['depth hidden in quotes, comments and CDATA', (n) => hiddenDepth(n), /nested deeper than 32/],
    ['260k sibling elements', (n) => `<array>${wideElements(n - 20)}</array>`, /more than 200000 elements/],
    ['100k attributes on one element', (n) => attributeHeavy(n, 'dict'), /element has more than 16 attributes/],
    ['40k namespace declarations on one element', (n) => namespaceDeclarations(n, 'dict'), /element declares more than 4 namespaces/],
    ['elements with a few attributes each', (n) => `<array>${attributedElements(n - 20)}</array>`, /more than 10000 attributes/],
  ]
  it.each(refused)('refuses %s with a PlistError, in at most 5x the time of the normal plist', async (_name, shape, message) => {
    const xml = body(shape)
    expect(attempt(xml)?.message).toMatch(message)
    const [reference, took] = await fastestOfEach(
      2,
      () => expect(normalThroughXmlParser()).toBeDefined(),
      () => attempt(xml),
    )
    expect(took, `${took.toFixed(0)} ms, normal ${reference.toFixed(0)} ms`).toBeLessThanOrEqual(5 * reference)
    expect(took).toBeLessThan(2000)
  })

  // Within the limits, these reach the parser: it must be linear on them too.
  const SIXTEEN = `<true${Array.from({ length: 16 }, (_v, i) => ` a${i}="1"`).join('')}/>`
  const parsed: [string, (bytes: number) => string][] = [
    ['150k sibling elements', (n) => `<array>${wideElements(n - 20, '<true/>')}</array>`],
    ['nesting at the depth limit, repeated', (n) => `<array>${fill('<array>'.repeat(31) + '</array>'.repeat(31), n - 20)}</array>`],
    ['a long text of entity references', (n) => `<string>${fill('&amp;', n - 20)}</string>`],
    ['a long text of character references', (n) => `<string>${fill('&#65;', n - 20)}</string>`],
    ['a long attribute value', (n) => `<string a="${fill('&amp;', n - 30)}">x</string>`],
    ['many comments holding markup', (n) => `<array>${fill('<!-- <a b="/>"> -->', n - 20)}</array>`],
    ['many CDATA sections holding markup', (n) => `<string>${fill('<![CDATA[<a>]]>', n - 20)}</string>`],
    ['16 attributes on each of 600 elements', (n) => `<array>${fill(SIXTEEN, 600 * SIXTEEN.length)}${wideElements(n - 600 * SIXTEEN.length - 20, '<true/>')}</array>`],
  ]
  it.each(parsed)('parses %s in at most 5x the time of the normal plist', async (_name, shape) => {
    const xml = body(shape)
    const [reference, took] = await fastestOfEach(
      2,
      () => normalThroughXmlParser(),
      () => expect(attempt(xml)).toBeUndefined(),
    )
    // Only the ratio: on a loaded machine both sides slow down together, an absolute bound does not.
    expect(took, `${took.toFixed(0)} ms, normal ${reference.toFixed(0)} ms`).toBeLessThanOrEqual(5 * reference)
  })
})
