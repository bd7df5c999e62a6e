import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readEssoSettings } from '../../src/config/esso.js'
import { ConfigError, type Environment } from '../../src/config/values.js'
import { buildEssoArtifacts, validateEssoDocument } from '../../src/protocol/esso.js'
import { buildPlist, type PlistDict } from '../../src/protocol/plist.js'
import { contextFor, createSigner, credentialPayload, redirectPayload, rootCertificatePayload, signedProfile, unwrapProfile, wifiPayload, type Signer } from '../protocol/esso-fixtures.js'

let signer: Signer
const dir = mkdtempSync(path.join(tmpdir(), 'esso-config-'))
let n = 0
function file(name: string, data: string | Uint8Array): string {
  const p = path.join(dir, `${++n}-${name}`)
  writeFileSync(p, data)
  return p
}

const plainProfile = (payloads: PlistDict[]) =>
  buildPlist({
    PayloadType: 'Configuration',
    PayloadVersion: 1,
    PayloadIdentifier: 'com.example.sso-profile',
    PayloadUUID: '6B3A0C7E-2F41-4D8A-9E5B-1C2D3E4F5A6B',
    PayloadContent: payloads.map((p, i) => ({ PayloadIdentifier: `com.example.sso-profile.${i}`, PayloadUUID: `6B3A0C7E-2F41-4D8A-9E5B-00000000000${i}`, PayloadVersion: 1, ...p })),
  })

const jsonPayload = { ExtensionIdentifier: 'com.example.sso.extension', TeamIdentifier: 'ABCDE12345', Type: 'Redirect', URLs: ['https://login.example.com/'], ExtensionData: { tenant: 'example', scopes: ['openid'], retries: 3, strict: true } }

beforeAll(async () => {
  signer = await createSigner()
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const read = (env: Environment) => readEssoSettings(env)
const base = (essoFile: string, more: Environment = {}): Environment => ({ ESSO_EXTENSIBLE_SSO: essoFile, ESSO_ITUNES_STORE_ID: '123456789', ...more })

/** The ConfigError `read(env)` throws, for asserting its variable and message. */
function configError(env: Environment): ConfigError {
  try {
    read(env)
  } catch (err) {
    if (err instanceof ConfigError) return err
    throw err
  }
  throw new Error('expected a ConfigError')
}

describe('ESSO configuration', () => {
  it('is off when no ESSO variable is set, and refuses half a configuration', () => {
    expect(read({})).toBeNull()
    expect(read({ ESSO_EXTENSIBLE_SSO: '  ' })).toBeNull()
    const err = configError({ ESSO_ITUNES_STORE_ID: '123' })
    expect(err.variable).toBe('ESSO_EXTENSIBLE_SSO')
    expect(err.message).toMatch(/required when ESSO_ITUNES_STORE_ID is set/)
  })

  it('loads a plain .mobileconfig with SSO and certificate payloads, and every other variable', () => {
    const profile = file('sso.mobileconfig', plainProfile([redirectPayload, credentialPayload, rootCertificatePayload(signer)]))
    const settings = read(
      base(profile, {
        ESSO_ASSOCIATED_DOMAINS: 'authsrv:login.example.com, authsrv:sso.example.com',
        ESSO_ASSOCIATED_DOMAINS_DIRECT_DOWNLOADS: 'true',
        ESSO_DELIVERY: 'declarations',
        ESSO_DEVELOPER_APP_IDS: 'ABCDE12345.com.example.sso',
        ESSO_APP_LICENSE_ASSIGNMENT: 'User',
      }),
    )!
    expect(settings.itunesStoreId).toBe(123456789)
    expect(settings.associatedDomains).toEqual(['authsrv:login.example.com', 'authsrv:sso.example.com'])
    expect(settings.directDownloads).toBe(true)
    expect(settings.delivery).toBe('declarations')
    expect(settings.developerAppIds).toEqual(['ABCDE12345.com.example.sso'])
    expect(settings.appLicenseAssignment).toBe('User')
    expect(settings.ssoPayloads.map((p) => p.Type)).toEqual(['Redirect', 'Credential'])
    expect(settings.ssoPayloads[0]).toMatchObject({ ...redirectPayload, PayloadIdentifier: 'com.example.sso-profile.0' })
    expect(settings.certificatePayloads).toHaveLength(1)
    expect(Buffer.from(settings.certificatePayloads[0]!.PayloadContent as Uint8Array).equals(signer.certificate.raw)).toBe(true)
    // Defaults.
    const plain = read(base(profile))!
    expect(plain.delivery).toBe('both')
    expect(plain.associatedDomains).toBeUndefined()
    expect(plain.developerAppIds).toBeUndefined()
  })

  it('loads a CMS-signed .mobileconfig (DER), reading the content out of the SignedData', () => {
    const signed = file('signed.mobileconfig', signedProfile(signer, [redirectPayload]))
    const settings = read(base(signed))!
    expect(settings.ssoPayloads).toEqual([{ ...redirectPayload, PayloadIdentifier: 'com.example.test.0', PayloadUUID: '00000000-0000-4000-8000-000000000000', PayloadVersion: 1 }])
    // A damaged signature is a damaged file.
    const bytes = Buffer.from(signedProfile(signer, [redirectPayload]))
    const at = bytes.indexOf(Buffer.from('login.example.com'))
    bytes[at] = 'L'.charCodeAt(0)
    const err = configError(base(file('damaged.mobileconfig', bytes)))
    expect(err.variable).toBe('ESSO_EXTENSIBLE_SSO')
    expect(err.message).toMatch(/is not a readable signed profile/)
  })

  it('loads a .json payload content and builds the Payload keys; the result builds a valid document', () => {
    const settings = read(base(file('sso.json', JSON.stringify(jsonPayload)), { ESSO_DEVELOPER_APP_IDS: 'ABCDE12345.com.example.sso' }))!
    expect(settings.ssoPayloads).toEqual([{ ...jsonPayload, PayloadType: 'com.apple.extensiblesso', PayloadVersion: 1 }])
    expect(settings.certificatePayloads).toEqual([])
    for (const mode of ['standard', 'developer'] as const) {
      const a = buildEssoArtifacts(settings, contextFor(signer), mode)
      const served = new Map(a.legacyProfiles.map((p) => [contextFor(signer).legacyProfileUrl(p.key), p.signed]))
      expect(validateEssoDocument(a.document, mode, { unwrapProfile, legacyProfile: (u) => served.get(u) })).toEqual([])
    }
  })

  it('goes through the given file reader', () => {
    const files: Record<string, string> = { '/etc/mdm/esso.json': JSON.stringify(jsonPayload) }
    const settings = readEssoSettings({ ESSO_EXTENSIBLE_SSO: '/etc/mdm/esso.json', ESSO_ITUNES_STORE_ID: '42' }, (p) => Buffer.from(files[p]!))
    expect(settings?.itunesStoreId).toBe(42)
  })

  it('allows test mode alone (no iTunes Store ID) and otherwise requires the store id', () => {
    const json = file('sso.json', JSON.stringify(jsonPayload))
    expect(read({ ESSO_EXTENSIBLE_SSO: json, ESSO_DEVELOPER_APP_IDS: 'ABCDE12345.com.example.sso' })?.itunesStoreId).toBeUndefined()
    const err = configError({ ESSO_EXTENSIBLE_SSO: json })
    expect(err.variable).toBe('ESSO_ITUNES_STORE_ID')
    expect(err.message).toMatch(/required when ESSO_EXTENSIBLE_SSO is set/)
  })

  describe('each bad form is a ConfigError naming the variable', () => {
    const json = () => file('sso.json', JSON.stringify(jsonPayload))
    const cases: [string, () => Environment, string, RegExp][] = [
      ['missing file', () => base(path.join(dir, 'nope.json')), 'ESSO_EXTENSIBLE_SSO', /cannot read .*nope\.json: ENOENT/],
      ['unknown extension', () => base(file('sso.txt', 'x')), 'ESSO_EXTENSIBLE_SSO', /expected a \.mobileconfig profile or a \.json file/],
      ['JSON that does not parse', () => base(file('sso.json', '{"Type":')), 'ESSO_EXTENSIBLE_SSO', /is not valid JSON/],
      ['JSON that is not an object', () => base(file('sso.json', '[]')), 'ESSO_EXTENSIBLE_SSO', /must hold a JSON object/],
      ['JSON with a null', () => base(file('sso.json', JSON.stringify({ ...jsonPayload, ExtensionData: { a: null } }))), 'ESSO_EXTENSIBLE_SSO', /ExtensionData\.a is null/],
      ['JSON with a prototype key', () => base(file('sso.json', '{"__proto__":{"x":1}}')), 'ESSO_EXTENSIBLE_SSO', /key "__proto__" is not allowed/],
      ['JSON of another payload type', () => base(file('sso.json', JSON.stringify({ ...jsonPayload, PayloadType: 'com.apple.sso' }))), 'ESSO_EXTENSIBLE_SSO', /PayloadType must be com\.apple\.extensiblesso or absent/],
      ['JSON Redirect without URLs', () => base(file('sso.json', JSON.stringify({ ...jsonPayload, URLs: undefined }))), 'ESSO_EXTENSIBLE_SSO', /a Redirect payload needs URLs/],
      ['profile with a Wi-Fi payload', () => base(file('sso.mobileconfig', plainProfile([redirectPayload, wifiPayload]))), 'ESSO_EXTENSIBLE_SSO', /contains a com\.apple\.wifi\.managed payload; only com\.apple\.extensiblesso and certificate payloads/],
      ['profile without an SSO payload', () => base(file('sso.mobileconfig', plainProfile([rootCertificatePayload(signer)]))), 'ESSO_EXTENSIBLE_SSO', /at least one com\.apple\.extensiblesso payload is required/],
      ['malformed plist', () => base(file('sso.mobileconfig', '<plist><dict><key>a</key></dict></plist>')), 'ESSO_EXTENSIBLE_SSO', /is not an XML property list profile/],
      ['plist with an entity', () => base(file('sso.mobileconfig', '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><plist><dict/></plist>')), 'ESSO_EXTENSIBLE_SSO', /not an XML property list profile/],
      ['plist that is not a profile', () => base(file('sso.mobileconfig', buildPlist({ PayloadType: 'com.apple.extensiblesso' }))), 'ESSO_EXTENSIBLE_SSO', /is not a configuration profile/],
      ['store id not a number', () => base(json(), { ESSO_ITUNES_STORE_ID: '12a' }), 'ESSO_ITUNES_STORE_ID', /positive whole number/],
      ['store id zero', () => base(json(), { ESSO_ITUNES_STORE_ID: '0' }), 'ESSO_ITUNES_STORE_ID', /positive whole number/],
      ['store id too large', () => base(json(), { ESSO_ITUNES_STORE_ID: '99999999999999999999' }), 'ESSO_ITUNES_STORE_ID', /positive whole number/],
      ['direct downloads not a boolean', () => base(json(), { ESSO_ASSOCIATED_DOMAINS: 'a.example', ESSO_ASSOCIATED_DOMAINS_DIRECT_DOWNLOADS: 'maybe' }), 'ESSO_ASSOCIATED_DOMAINS_DIRECT_DOWNLOADS', /true or false/],
      ['direct downloads without domains', () => base(json(), { ESSO_ASSOCIATED_DOMAINS_DIRECT_DOWNLOADS: 'true' }), 'ESSO_ASSOCIATED_DOMAINS_DIRECT_DOWNLOADS', /no effect without associated domains/],
      ['empty domain in the list', () => base(json(), { ESSO_ASSOCIATED_DOMAINS: 'a.example,,b.example' }), 'ESSO_ASSOCIATED_DOMAINS', /without empty items/],
      ['unknown delivery', () => base(json(), { ESSO_DELIVERY: 'email' }), 'ESSO_DELIVERY', /expected one of profile, declarations, both/],
      ['malformed App ID', () => base(json(), { ESSO_DEVELOPER_APP_IDS: 'com.example.sso' }), 'ESSO_DEVELOPER_APP_IDS', /is not an App ID/],
      ['unknown license assignment', () => base(json(), { ESSO_APP_LICENSE_ASSIGNMENT: 'Team' }), 'ESSO_APP_LICENSE_ASSIGNMENT', /expected one of User, Device/],
    ]
    for (const [name, env, variable, message] of cases) {
      it(name, () => {
        const err = configError(env())
        expect(err.variable).toBe(variable)
        expect(err.message).toMatch(message)
      })
    }
  })
})
