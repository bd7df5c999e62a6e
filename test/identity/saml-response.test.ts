/**
 * The pure SAML checks (src/identity/saml/response.ts, xml.ts) on hand-made and random input, and the
 * library versions SECURITY.md requires.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { checkBearerConfirmation, inspectResponse, readSignedAssertion, ResponseRefused } from '../../src/identity/saml/response.js'
import { parseStrictXml, XmlRefused } from '../../src/identity/saml/xml.js'

const b64 = (s: string) => Buffer.from(s).toString('base64')
const P = 'xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"'
const SUCCESS = '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
const response = (inner: string, attrs = 'InResponseTo="_req"') => `<samlp:Response ${P} ID="_r" ${attrs}>${inner}</samlp:Response>`

function refusal(fn: () => unknown): ResponseRefused {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(ResponseRefused)
    return err as ResponseRefused
  }
  throw new Error('expected a refusal')
}

describe('inspectResponse', () => {
  it('reads InResponseTo, Destination and Issuer of a well-formed Response', () => {
    const env = inspectResponse(b64(response(`<saml:Issuer>https://idp</saml:Issuer>${SUCCESS}<saml:Assertion ID="_a"/>`, 'InResponseTo="_req" Destination="https://sp/acs"')))
    expect(env).toMatchObject({ inResponseTo: '_req', destination: 'https://sp/acs', issuer: 'https://idp' })
  })

  it('refuses what an honest IdP never sends', () => {
    expect(refusal(() => inspectResponse(b64(response(`${SUCCESS}<saml:Assertion ID="_a"/>`, ''))))).toMatchObject({ kind: 'unsolicited' })
    expect(refusal(() => inspectResponse(b64(response(`${SUCCESS}`)))).message).toMatch(/found 0/)
    expect(refusal(() => inspectResponse(b64(response(`${SUCCESS}<saml:EncryptedAssertion/><saml:Assertion ID="_a"/>`)))).message).toMatch(/encrypted/)
    expect(refusal(() => inspectResponse(b64(response('<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"/></samlp:Status><saml:Assertion ID="_a"/>')))).kind).toBe('idp_status')
    expect(refusal(() => inspectResponse(b64('<Response/>'))).message).toMatch(/not a samlp:Response/)
    expect(refusal(() => inspectResponse(b64(`<?xml version="1.0"?><?xml-stylesheet href="x"?>${response(SUCCESS)}`))).message).toMatch(/processing instructions/)
    expect(refusal(() => inspectResponse('%%%')).message).toMatch(/not base64/)
    expect(refusal(() => inspectResponse(Buffer.from([0xff, 0xfe, 0x00]).toString('base64'))).message).toMatch(/UTF-8/)
    expect(refusal(() => inspectResponse(b64(`${'<a>'.repeat(100)}${'</a>'.repeat(100)}`))).message).toMatch(/nested deeper/)
    expect(refusal(() => inspectResponse(b64(`${'<a b="/>">'.repeat(100)}${'</a>'.repeat(100)}`))).message).toMatch(/nested deeper/)
  })

  it('throws only its own refusals, whatever the input', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string().map(b64), fc.string().map((s) => b64(response(s)))), (input) => {
        try {
          inspectResponse(input)
        } catch (err) {
          if (!(err instanceof ResponseRefused) && !(err instanceof XmlRefused)) throw err
        }
      }),
      { numRuns: 300 },
    )
  })
})

describe('readSignedAssertion and checkBearerConfirmation', () => {
  const assertion = (confirmations: string) =>
    `<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a1"><saml:Issuer>https://idp</saml:Issuer><saml:Subject><saml:NameID>alice</saml:NameID>${confirmations}</saml:Subject><saml:Conditions NotOnOrAfter="2030-01-01T00:05:00Z"/></saml:Assertion>`
  const bearer = (attrs: string) => `<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData ${attrs}/></saml:SubjectConfirmation>`

  it('binds the assertion to our ACS and our request through a bearer confirmation', () => {
    const a = readSignedAssertion(assertion(bearer('Recipient="https://sp/acs" InResponseTo="_req" NotOnOrAfter="2030-01-01T00:10:00Z"')))
    expect(a).toMatchObject({ id: '_a1', issuer: 'https://idp' })
    expect(a.expiresAt?.toISOString()).toBe('2030-01-01T00:10:00.000Z')
    checkBearerConfirmation(a, { recipient: 'https://sp/acs', inResponseTo: '_req' })
    expect(() => checkBearerConfirmation(a, { recipient: 'https://evil/acs', inResponseTo: '_req' })).toThrow(/Recipient/)
    expect(() => checkBearerConfirmation(a, { recipient: 'https://sp/acs', inResponseTo: '_other' })).toThrow(ResponseRefused)
    const noTime = readSignedAssertion(assertion(bearer('Recipient="https://sp/acs" InResponseTo="_req"')))
    expect(() => checkBearerConfirmation(noTime, { recipient: 'https://sp/acs', inResponseTo: '_req' })).toThrow(ResponseRefused)
    const holderOfKey = readSignedAssertion(assertion(bearer('Recipient="https://sp/acs" InResponseTo="_req" NotOnOrAfter="2030-01-01T00:10:00Z"').replace('cm:bearer', 'cm:holder-of-key')))
    expect(() => checkBearerConfirmation(holderOfKey, { recipient: 'https://sp/acs', inResponseTo: '_req' })).toThrow(/no bearer/)
    expect(() => readSignedAssertion(assertion(bearer('NotOnOrAfter="tomorrow"')))).toThrow(/malformed date/)
  })
})

describe('parseStrictXml', () => {
  it('refuses comments, DOCTYPE and malformed XML with XmlRefused', () => {
    expect(() => parseStrictXml('<a>x<!-- c --></a>')).toThrow(/comments/)
    expect(() => parseStrictXml('<!DOCTYPE a><a/>')).toThrow(/DOCTYPE/)
    expect(() => parseStrictXml('<a><b></a>')).toThrow(XmlRefused)
    expect(parseStrictXml('<?xml version="1.0" encoding="UTF-8"?><a><![CDATA[x]]></a>').documentElement?.localName).toBe('a')
  })
})

describe('library versions (SECURITY.md)', () => {
  const version = (pkg: string, from?: string) => {
    const req = createRequire(from ? path.join(from, 'package.json') : import.meta.url)
    const file = req.resolve(`${pkg}/package.json`)
    return { dir: path.dirname(file), version: JSON.parse(readFileSync(file, 'utf8')).version as string }
  }
  const atLeast = (v: string, min: string) => {
    const a = v.split('.').map(Number)
    const b = min.split('.').map(Number)
    for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! > b[i]!
    return true
  }

  it('has @node-saml/node-saml >= 5.1.0 with xml-crypto >= 6.0.1 and @xmldom/xmldom >= 0.8.15 under it', () => {
    const saml = version('@node-saml/node-saml')
    expect(atLeast(saml.version, '5.1.0'), saml.version).toBe(true)
    const crypto = version('xml-crypto', saml.dir)
    expect(atLeast(crypto.version, '6.0.1'), crypto.version).toBe(true)
    expect(atLeast(version('@xmldom/xmldom', saml.dir).version, '0.8.15')).toBe(true)
    expect(atLeast(version('@xmldom/xmldom', crypto.dir).version, '0.8.15')).toBe(true)
  })
})
