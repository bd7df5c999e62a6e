import { beforeAll, describe, expect, it } from 'vitest'
import { canonicalJson, nameBasedUuid, sortPlistKeys } from '../../src/protocol/canonical.js'
import { declarationServerToken } from '../../src/protocol/declarations.js'
import { checkEssoSettings, essoSettingsProblems, type EssoSettings } from '../../src/protocol/esso.js'
import { createSigner, credentialPayload, redirectPayload, settingsFor, wifiPayload, type Signer } from './esso-fixtures.js'

let signer: Signer
beforeAll(async () => {
  signer = await createSigner()
})

const problems = (overrides: Partial<EssoSettings>) => checkEssoSettings(settingsFor(signer, overrides))

describe('Enrollment SSO settings check', () => {
  it('accepts Redirect and Credential payloads with certificates, and test mode alone', () => {
    expect(problems({})).toEqual([])
    // TeamIdentifier is "required on macOS and ignored elsewhere": ESSO is iOS and visionOS only.
    expect(problems({ ssoPayloads: [redirectPayload, credentialPayload] })).toEqual([])
    expect(problems({ itunesStoreId: undefined })).toEqual([])
    expect(problems({ certificatePayloads: [], associatedDomains: undefined, directDownloads: undefined, developerAppIds: undefined })).toEqual([])
  })

  it('refuses other payload types, in the SSO list and in the certificate list', () => {
    expect(problems({ ssoPayloads: [redirectPayload, wifiPayload] })).toContain('extensible SSO payload 2: PayloadType must be com.apple.extensiblesso')
    expect(problems({ certificatePayloads: [{ PayloadType: 'com.apple.security.scep', PayloadContent: { URL: 'https://ca.example.com' } }] })).toEqual([
      'certificate payload 1: PayloadType must be one of com.apple.security.root, com.apple.security.pkcs1, com.apple.security.pem, com.apple.security.pkcs12',
      'certificate payload 1: PayloadContent must hold the certificate data',
    ])
    expect(problems({ ssoPayloads: [] })).toEqual(['at least one com.apple.extensiblesso payload is required'])
  })

  it('checks each SSO payload against the extensiblesso schema', () => {
    const { ExtensionIdentifier: _e, ...noExtension } = redirectPayload
    expect(problems({ ssoPayloads: [noExtension] })).toEqual(['extensible SSO payload 1 has no ExtensionIdentifier (the bundle identifier of the SSO app extension)'])
    expect(problems({ ssoPayloads: [{ ...redirectPayload, Type: 'Kerberos' }] })).toEqual(['extensible SSO payload 1: Type must be Redirect or Credential'])
    expect(problems({ ssoPayloads: [{ ...redirectPayload, URLs: [] }] })).toEqual(['extensible SSO payload 1: a Redirect payload needs URLs, a non-empty array of http(s) URL prefixes'])
    expect(problems({ ssoPayloads: [{ ...redirectPayload, URLs: ['https://login.example.com/?tenant=1', 'ftp://x.example'] }] })).toEqual([
      'extensible SSO payload 1: URL "https://login.example.com/?tenant=1" must be an http:// or https:// prefix without query or fragment',
      'extensible SSO payload 1: URL "ftp://x.example" must be an http:// or https:// prefix without query or fragment',
    ])
    const { Hosts: _h, ...noHosts } = credentialPayload
    expect(problems({ ssoPayloads: [noHosts] })).toEqual(['extensible SSO payload 1: a Credential payload needs Hosts, a non-empty array of host or domain names'])
    expect(problems({ ssoPayloads: [{ ...redirectPayload, ExtensionData: 'x', ScreenLockedBehavior: 'Wait', PayloadVersion: '1' }] })).toEqual([
      'extensible SSO payload 1: PayloadVersion must be an integer',
      'extensible SSO payload 1: ExtensionData must be a dictionary',
      'extensible SSO payload 1: ScreenLockedBehavior must be Cancel or DoNotHandle',
    ])
    // "Requires that the URLs of all installed Extensible SSO payloads are unique".
    expect(problems({ ssoPayloads: [redirectPayload, { ...redirectPayload, ExtensionIdentifier: 'com.example.other', URLs: ['HTTPS://LOGIN.example.com/'] }] })).toEqual([
      'the ESSO payloads: extensible SSO URL "https://login.example.com/" appears more than once',
    ])
  })

  it('checks the app identifiers, delivery and domains, naming the field', () => {
    expect(problems({ itunesStoreId: 1.5 })).toEqual(['iTunesStoreID must be a positive integer (the App Store id of the SSO app)'])
    expect(problems({ itunesStoreId: 0 })).toEqual(['iTunesStoreID must be a positive integer (the App Store id of the SSO app)'])
    expect(problems({ itunesStoreId: undefined, developerAppIds: undefined })).toEqual(['set the iTunes Store ID of the SSO app (or developer App IDs for test mode only)'])
    expect(problems({ developerAppIds: ['com.example.sso'] })).toEqual([
      '"com.example.sso" is not an App ID (TEAMID.bundle.id, the Team ID being 10 upper-case letters or digits)',
    ])
    expect(problems({ developerAppIds: ['ABCDE12345.com.example.sso', 'ZYXWV54321.com.example.sso'] })).toEqual(['bundle ID com.example.sso appears in more than one App ID'])
    expect(problems({ developerAppIds: [] })).toEqual(['developer App IDs must be a non-empty list'])
    expect(problems({ delivery: 'email' as EssoSettings['delivery'] })).toEqual(['delivery must be one of profile, declarations, both'])
    expect(problems({ associatedDomains: undefined })).toEqual(['direct downloads has no effect without associated domains'])
    expect(problems({ associatedDomains: ['login.example.com, sso.example.com'] })).toEqual(['"login.example.com, sso.example.com" is not a domain'])
    expect(essoSettingsProblems(settingsFor(signer, { itunesStoreId: -3 })).map((p) => p.field)).toEqual(['itunesStoreId'])
  })
})

describe('canonical forms', () => {
  it('writes the same JSON and plist whatever the key order', () => {
    expect(canonicalJson({ b: [2, { d: 1, c: null }], a: 'x' })).toBe('{"a":"x","b":[2,{"c":null,"d":1}]}')
    expect(Object.keys(sortPlistKeys({ b: 1, a: { d: 1, c: 2 } }))).toEqual(['a', 'b'])
    expect(declarationServerToken('T', 'i', { a: 1, b: 2 })).toBe(declarationServerToken('T', 'i', { b: 2, a: 1 }))
    expect(declarationServerToken('T', 'i', { a: 1 })).not.toBe(declarationServerToken('T', 'j', { a: 1 }))
  })

  it('derives version 5 UUIDs that never change between releases', () => {
    // A changed value here would make every device reinstall its ESSO profile: change it on purpose only.
    // The same value as Python's uuid.uuid5(UUID('10369f6b-2c57-4399-b02a-373004fb7545'), 'com.example.mdm').
    expect(nameBasedUuid('com.example.mdm')).toBe('EDF0F7B2-82F9-5AA3-A15A-E5C5171D1DDD')
    expect(nameBasedUuid('com.example.mdm')).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/)
    expect(nameBasedUuid('a')).not.toBe(nameBasedUuid('b'))
  })
})
