import { describe, expect, it } from 'vitest'
import { quotedString, wwwAuthenticate } from '../../src/protocol/challenge.js'
import { modelFamilyOfProduct, parseUserIdentifier } from '../../src/protocol/discovery.js'
import { parseEnrollRequest } from '../../src/protocol/enroll-request.js'
import { PlistError } from '../../src/protocol/plist.js'

describe('WWW-Authenticate', () => {
  it('writes Bearer with quoted, comma-separated parameters', () => {
    expect(wwwAuthenticate({ method: 'apple-as-web', url: 'https://mdm.example.com/mdm/sso/abc' })).toBe('Bearer method="apple-as-web", url="https://mdm.example.com/mdm/sso/abc"')
  })

  it('writes apple-oauth2 with its five parameters in the documented order and names', () => {
    const header = wwwAuthenticate({
      method: 'apple-oauth2',
      authorizationUrl: 'https://idp.example.com/authorize',
      tokenUrl: 'https://mdm.example.com/api/v1/mdm/oauth2/token/abc',
      redirectUrl: 'apple-remotemanagement-user-login:/oauth2/redirection',
      clientId: 'byod-mdm',
      scope: 'openid email profile',
    })
    expect(header).toBe(
      'Bearer method="apple-oauth2", authorization-url="https://idp.example.com/authorize", token-url="https://mdm.example.com/api/v1/mdm/oauth2/token/abc", redirect-url="apple-remotemanagement-user-login:/oauth2/redirection", client-id="byod-mdm", scope="openid email profile"',
    )
  })

  it('escapes quotes and backslashes and refuses control characters (header splitting)', () => {
    expect(quotedString('a"b\\c')).toBe('"a\\"b\\\\c"')
    expect(() => quotedString('https://x/\r\nSet-Cookie: a=b')).toThrow(/control characters/)
  })
})

describe('user-identifier', () => {
  it('splits at the last @ and lower-cases only the domain', () => {
    expect(parseUserIdentifier('Alice.Smith@Example.COM')).toEqual({ value: 'Alice.Smith@Example.COM', domain: 'example.com' })
    expect(parseUserIdentifier('"odd@local"@xn--bcher-kva.example')).toEqual({ value: '"odd@local"@xn--bcher-kva.example', domain: 'xn--bcher-kva.example' })
  })

  it('says why an identifier is unusable', () => {
    expect(parseUserIdentifier(undefined)).toEqual({ problem: 'user-identifier is missing' })
    expect(parseUserIdentifier(['a@example.com', 'b@example.com'])).toEqual({ problem: 'user-identifier is given more than once' })
    for (const bad of ['', 'alice', 'alice@', '@example.com', 'alice@example', 'alice@exa_mple.com', 'al ice@example.com', `a@${'x'.repeat(300)}.com`]) {
      expect(parseUserIdentifier(bad), bad).toHaveProperty('problem')
    }
  })
})

describe('model family of a PRODUCT', () => {
  it('recognises the identifiers devices report', () => {
    const cases: Record<string, string | undefined> = {
      'iPhone12,1': 'iPhone',
      'iPad13,4': 'iPad',
      'Mac14,2': 'Mac',
      'MacBookPro18,1': 'Mac',
      'MacBookAir10,1': 'Mac',
      'iMac21,1': 'Mac',
      'Macmini9,1': 'Mac',
      'VirtualMac2,1': 'Mac',
      'RealityDevice14,1': 'RealityDevice',
      'Watch6,1': 'Watch',
      'AppleTV11,1': 'AppleTV',
      'iPod9,1': undefined,
      iPhone: undefined,
    }
    for (const [product, family] of Object.entries(cases)) expect(modelFamilyOfProduct(product), product).toBe(family)
  })
})

describe('enroll request plist', () => {
  const plist = (body: string) => `<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>${body}</dict></plist>`
  it('reads PRODUCT, VERSION and LANGUAGE and ignores other keys', () => {
    expect(parseEnrollRequest(Buffer.from(plist('<key>PRODUCT</key><string>iPad13,4</string><key>VERSION</key><string>22C152</string><key>LANGUAGE</key><string>en-GB</string><key>OTHER</key><integer>1</integer>')))).toEqual({
      product: 'iPad13,4',
      version: '22C152',
      language: 'en-GB',
    })
    expect(parseEnrollRequest(Buffer.from(plist('')))).toEqual({})
  })

  it('refuses wrong types and oversized values', () => {
    expect(() => parseEnrollRequest(Buffer.from(plist('<key>PRODUCT</key><integer>1</integer>')))).toThrow(PlistError)
    expect(() => parseEnrollRequest(Buffer.from(plist(`<key>VERSION</key><string>${'x'.repeat(65)}</string>`)))).toThrow(PlistError)
    expect(() => parseEnrollRequest(Buffer.from('<?xml version="1.0"?><plist><array/></plist>'))).toThrow(PlistError)
  })
})
