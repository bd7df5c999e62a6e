import { beforeAll, describe, expect, it } from 'vitest'
import { makeDeclaration, type Declaration } from '../../src/protocol/declarations.js'
import {
  buildEssoArtifacts,
  encodeDeclaration,
  EssoSettingsError,
  essoModes,
  validateEssoDocument,
  type EssoArtifacts,
  type EssoDocument,
  type EssoMode,
  type EssoSettings,
} from '../../src/protocol/esso.js'
import { buildPlist, parsePlistDict, type PlistDict } from '../../src/protocol/plist.js'
import { openssl } from '../helpers/openssl.js'
import {
  contextFor,
  createSigner,
  credentialPayload,
  redirectPayload,
  settingsFor,
  signedProfile,
  unwrapProfile,
  wifiPayload,
  type Signer,
} from './esso-fixtures.js'

let signer: Signer
beforeAll(async () => {
  signer = await createSigner()
})

const build = (overrides: Partial<EssoSettings> = {}, mode: EssoMode = 'standard', ctx: Parameters<typeof contextFor>[1] = {}) =>
  buildEssoArtifacts(settingsFor(signer, overrides), contextFor(signer, ctx), mode)

/** The validator as the server would run it: legacy profiles looked up among those it serves. */
function validate(doc: unknown, mode: EssoMode, served: EssoArtifacts['legacyProfiles'] = [], url = contextFor(signer).legacyProfileUrl) {
  const byUrl = new Map(served.map((p) => [url(p.key), p.signed]))
  return validateEssoDocument(doc, mode, { unwrapProfile, legacyProfile: (u) => byUrl.get(u) })
}

const tokens = (a: EssoArtifacts) => Object.fromEntries(a.declarations.map((d) => [d.Type + (d.Payload.BundleID ? `:${d.Payload.BundleID}` : ''), d.ServerToken]))
const profileOf = (doc: EssoDocument) => unwrapProfile(Buffer.from(doc.ConfigurationProfile!, 'base64'))
const of = (a: EssoArtifacts, type: string) => a.declarations.find((d) => d.Type === type)!

/** The document with its declarations replaced by `edit`'s result. */
function withDeclarations(a: EssoArtifacts, edit: (d: Declaration[]) => Declaration[]): EssoDocument {
  return { ...a.document, Declarations: edit(structuredClone(a.declarations)).map(encodeDeclaration) }
}

/** A fresh activation listing these configurations. */
const activationFor = (configs: Declaration[], id = 'com.example.mdm.esso.activation') =>
  makeDeclaration('com.apple.activation.simple', id, { StandardConfigurations: configs.map((c) => c.Identifier) })

describe('Enrollment SSO builder', () => {
  it('builds a standard document that validates, with the profile and the declarations Apple asks for', () => {
    const a = build()
    expect(validate(a.document, 'standard', a.legacyProfiles)).toEqual([])
    expect(Object.keys(a.document).sort()).toEqual(['AssociatedDomains', 'AssociatedDomainsEnableDirectDownloads', 'ConfigurationProfile', 'Declarations', 'iTunesStoreID'])
    expect(a.document.iTunesStoreID).toBe(123456789)
    expect(a.declarations.map((d) => d.Type)).toEqual(['com.apple.activation.simple', 'com.apple.configuration.app.managed', 'com.apple.configuration.legacy'])
    // The document carries exactly the decoded declarations.
    expect(a.document.Declarations!.map((s) => JSON.parse(Buffer.from(s, 'base64').toString('utf8')))).toEqual(a.declarations)
    const [activation, app, legacy] = a.declarations
    expect(activation!.Payload).toEqual({ StandardConfigurations: [app!.Identifier, legacy!.Identifier] })
    expect(app!.Payload).toEqual({
      AppStoreID: '123456789',
      Attributes: { AssociatedDomains: ['authsrv:login.example.com'], AssociatedDomainsEnableDirectDownloads: false },
      InstallBehavior: { Install: 'Required' },
    })
    expect(legacy!.Payload).toEqual({ ProfileURL: `https://mdm.example.com/api/mdm/apple/esso/profiles/${a.legacyProfiles[0]!.key}` })
    for (const d of a.declarations) {
      expect(d.Identifier.startsWith('com.example.mdm.esso.')).toBe(true)
      expect(d.ServerToken).toMatch(/^[0-9a-f]{64}$/)
    }
    // The legacy configuration serves the very profile of ConfigurationProfile.
    expect(a.legacyProfiles).toHaveLength(1)
    expect(unwrapProfile(a.legacyProfiles[0]!.signed).equals(profileOf(a.document))).toBe(true)
  })

  it('writes a profile with the SSO and certificate payloads only, stable Payload keys filled in', () => {
    const profile = parsePlistDict(profileOf(build().document))
    expect(profile).toMatchObject({ PayloadType: 'Configuration', PayloadVersion: 1, PayloadIdentifier: 'com.example.mdm.esso.profile', PayloadOrganization: 'Example Org' })
    expect(profile.PayloadRemovalDisallowed).toBeUndefined()
    const payloads = profile.PayloadContent as PlistDict[]
    expect(payloads.map((p) => p.PayloadType)).toEqual(['com.apple.extensiblesso', 'com.apple.security.root'])
    expect(payloads[0]).toMatchObject({ ...redirectPayload, PayloadVersion: 1 })
    for (const p of [profile, ...payloads]) expect(p.PayloadUUID).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/)
    expect(payloads[0]!.PayloadIdentifier).toMatch(/^com\.example\.mdm\.esso\.sso\.[0-9a-f]{16}$/)
    // Payload keys the administrator gave are kept.
    const given = parsePlistDict(profileOf(build({ ssoPayloads: [{ ...redirectPayload, PayloadUUID: 'A1B2C3D4-0000-4000-8000-000000000001', PayloadIdentifier: 'com.example.given' }] }).document))
    expect((given.PayloadContent as PlistDict[])[0]).toMatchObject({ PayloadUUID: 'A1B2C3D4-0000-4000-8000-000000000001', PayloadIdentifier: 'com.example.given' })
  })

  it('signs the profile with a CMS that openssl verifies, holding the plist byte for byte', () => {
    const a = build()
    const run = openssl()
    try {
      const file = run.file('esso-profile.der', Buffer.from(a.document.ConfigurationProfile!, 'base64'))
      const out = run.run(['cms', '-verify', '-inform', 'DER', '-in', file, '-noverify'])
      expect(out.equals(profileOf(a.document))).toBe(true)
      expect(out.toString('utf8')).toContain('<string>com.apple.extensiblesso</string>')
    } finally {
      run.close()
    }
  })

  it('rebuilds the same identifiers, ServerTokens and profile plist, whatever the key order of the settings', () => {
    const first = build()
    const again = build()
    expect(again.declarations).toEqual(first.declarations)
    expect(again.document.Declarations).toEqual(first.document.Declarations)
    expect(again.legacyProfiles[0]!.key).toBe(first.legacyProfiles[0]!.key)
    // Signatures differ (signingTime); the signed plist does not.
    expect(profileOf(again.document).equals(profileOf(first.document))).toBe(true)

    const reversed = (d: PlistDict): PlistDict => Object.fromEntries(Object.entries(d).reverse())
    const shuffled = build({ ssoPayloads: [reversed({ ...redirectPayload, ExtensionData: { retries: 3, tenant: 'example' } })] })
    expect(shuffled.declarations).toEqual(first.declarations)
    expect(profileOf(shuffled.document).equals(profileOf(first.document))).toBe(true)
  })

  it('changes exactly the ServerTokens whose declarations a setting touches', () => {
    const base = tokens(build())
    const changed = (overrides: Partial<EssoSettings>, ctx: Parameters<typeof contextFor>[1] = {}) => {
      const t = tokens(build(overrides, 'standard', ctx))
      return Object.keys(base).filter((k) => t[k] !== base[k]).sort()
    }
    expect(changed({ associatedDomains: ['authsrv:sso.example.com'] })).toEqual(['com.apple.configuration.app.managed'])
    expect(changed({ directDownloads: true })).toEqual(['com.apple.configuration.app.managed'])
    expect(changed({ itunesStoreId: 987654321 })).toEqual(['com.apple.configuration.app.managed'])
    expect(changed({ appLicenseAssignment: 'User' })).toEqual(['com.apple.configuration.app.managed'])
    // The profile's content is in the legacy configuration's ProfileURL (its key), nowhere else.
    expect(changed({ ssoPayloads: [{ ...redirectPayload, URLs: ['https://login.example.org/'] }] })).toEqual(['com.apple.configuration.legacy'])
    expect(changed({ certificatePayloads: [] })).toEqual(['com.apple.configuration.legacy'])
    expect(changed({}, { orgName: 'Another Org' })).toEqual(['com.apple.configuration.legacy'])
    // Where the document is delivered does not change what is declared.
    expect(changed({ delivery: 'declarations' })).toEqual([])
  })

  it('builds the developer (test mode) document: AppIDs, one app configuration per App ID by BundleID', () => {
    const appIds = ['ABCDE12345.com.example.sso', 'ABCDE12345.com.example.sso-beta']
    const a = build({ developerAppIds: appIds }, 'developer')
    expect(validate(a.document, 'developer', a.legacyProfiles)).toEqual([])
    expect(a.document.iTunesStoreID).toBeUndefined()
    expect(a.document.AppIDs).toEqual(appIds)
    const apps = a.declarations.filter((d) => d.Type === 'com.apple.configuration.app.managed')
    expect(apps.map((d) => d.Payload.BundleID)).toEqual(['com.example.sso', 'com.example.sso-beta'])
    for (const app of apps) expect(app.Payload.InstallBehavior).toBeUndefined()
    // Distinct from the standard set, so the server can never serve one for the other.
    const standard = new Set(build().declarations.map((d) => d.Identifier))
    for (const d of a.declarations) expect(standard.has(d.Identifier)).toBe(false)
    // A developer-only configuration has no standard document.
    expect(essoModes(settingsFor(signer, { itunesStoreId: undefined }))).toEqual(['developer'])
    expect(() => build({ itunesStoreId: undefined }, 'standard')).toThrow(EssoSettingsError)
    expect(() => build({ developerAppIds: undefined }, 'developer')).toThrow(/developer App IDs/)
  })

  it('delivers the profile only, or the declarations only, as the settings say', () => {
    const profileOnly = build({ delivery: 'profile' })
    expect(profileOnly.document.Declarations).toBeUndefined()
    expect(profileOnly.declarations).toEqual([])
    expect(profileOnly.legacyProfiles).toEqual([])
    expect(validate(profileOnly.document, 'standard')).toEqual([])

    const declarationsOnly = build({ delivery: 'declarations' })
    expect(declarationsOnly.document.ConfigurationProfile).toBeUndefined()
    // The device ignores the document's AssociatedDomains* with declarations: they live in Attributes.
    expect(declarationsOnly.document.AssociatedDomains).toBeUndefined()
    expect(validate(declarationsOnly.document, 'standard', declarationsOnly.legacyProfiles)).toEqual([])
  })

  it('keeps identifiers within 64 octets under a long prefix, and refuses invalid settings or prefixes', () => {
    const a = build({}, 'standard', { identifierPrefix: `com.${'very-long-host-name.'.repeat(4)}example` })
    for (const d of a.declarations) expect(d.Identifier).toMatch(/^esso\.[0-9a-f]{16}\.(activation|app|legacy)$/)
    expect(validate(a.document, 'standard', a.legacyProfiles)).toEqual([])
    const dev = build({}, 'developer', { identifierPrefix: `com.${'very-long-host-name.'.repeat(4)}example` })
    for (const d of dev.declarations) expect(Buffer.byteLength(d.Identifier)).toBeLessThanOrEqual(64)
    expect(() => build({}, 'standard', { identifierPrefix: 'com.example/mdm' })).toThrow(/identifier prefix/)
    expect(() => build({ ssoPayloads: [wifiPayload] })).toThrow(EssoSettingsError)
  })

  it('accepts an app configuration that references an asset it carries', () => {
    const a = build()
    const asset = makeDeclaration('com.apple.asset.data', 'com.example.mdm.esso.appconfig', {
      Reference: { DataURL: 'https://mdm.example.com/appconfig.plist', ContentType: 'application/x-plist' },
    })
    const doc = withDeclarations(a, (ds) => {
      const app = ds[1]!
      app.Payload.AppConfig = { DataAssetReference: asset.Identifier }
      return [ds[0]!, app, ds[2]!, asset]
    })
    expect(validate(doc, 'standard', a.legacyProfiles)).toEqual([])
  })
})

describe('Enrollment SSO validator: one broken rule each', () => {
  let a: EssoArtifacts
  let dev: EssoArtifacts
  beforeAll(() => {
    a = build()
    dev = build({}, 'developer')
  })
  const check = (doc: unknown, mode: EssoMode = 'standard') => validate(doc, mode, mode === 'standard' ? a.legacyProfiles : dev.legacyProfiles)
  const profileDoc = (payloads: PlistDict[]) => ({ ...a.document, ConfigurationProfile: signedProfile(signer, payloads).toString('base64') })

  it('refuses what is not a JSON object', () => {
    expect(check([])).toEqual(['the Enrollment SSO document must be a JSON object'])
  })

  it('profile with a non-SSO payload', () => {
    expect(check(profileDoc([redirectPayload, wifiPayload]))).toEqual([
      'ConfigurationProfile contains a com.apple.wifi.managed payload; only com.apple.extensiblesso and certificate payloads are allowed',
    ])
  })

  it('profile without an SSO payload', () => {
    expect(check(profileDoc([settingsFor(signer).certificatePayloads[0]!]))).toEqual(['ConfigurationProfile contains no com.apple.extensiblesso payload; it needs at least one'])
  })

  it('profile with a broken SSO payload', () => {
    const { URLs: _, ...noUrls } = redirectPayload
    expect(check(profileDoc([noUrls, credentialPayload]))).toEqual([
      'ConfigurationProfile, payload com.example.test.0: a Redirect payload needs URLs, a non-empty array of http(s) URL prefixes',
    ])
  })

  it('unsigned profile, and a profile that is not Base64', () => {
    const plain = Buffer.from(buildPlist(parsePlistDict(profileOf(a.document)))).toString('base64')
    expect(check({ ...a.document, ConfigurationProfile: plain })).toEqual([expect.stringMatching(/^ConfigurationProfile is not a signed profile \(CMS SignedData\): /)])
    expect(check({ ...a.document, ConfigurationProfile: 'not base64!' })).toEqual(['ConfigurationProfile must be a Base64 string'])
  })

  it('neither profile nor declarations', () => {
    const { ConfigurationProfile: _p, Declarations: _d, ...rest } = a.document
    expect(check(rest)).toEqual(['the document needs ConfigurationProfile or Declarations (at least one of them)'])
  })

  it('iTunesStoreID missing or not an integer', () => {
    const { iTunesStoreID: _, ...rest } = a.document
    expect(check(rest)).toEqual(['iTunesStoreID is required in the standard document (the App Store id of the SSO app)'])
    for (const bad of ['123456789', 1.5, -1]) expect(check({ ...a.document, iTunesStoreID: bad })).toEqual(['iTunesStoreID must be a positive integer'])
  })

  it('AppIDs in the standard document', () => {
    expect(check({ ...a.document, AppIDs: ['ABCDE12345.com.example.sso'] })).toEqual([
      'AppIDs must not be present in the standard document; it belongs to the developer (test mode) document only',
    ])
  })

  it('wrong types of the associated-domain keys', () => {
    expect(check({ ...a.document, AssociatedDomains: 'authsrv:login.example.com' })).toEqual(['AssociatedDomains must be an array of strings'])
    expect(check({ ...a.document, AssociatedDomainsEnableDirectDownloads: 'false' })).toEqual(['AssociatedDomainsEnableDirectDownloads must be a boolean'])
  })

  it('declarations that are not Base64 JSON declarations, or share an Identifier', () => {
    const text = (s: string) => Buffer.from(s).toString('base64')
    expect(check({ ...a.document, Declarations: 'x' })).toContain('Declarations must be an array of Base64 strings')
    const broken = check({ ...a.document, Declarations: [...a.document.Declarations!, '%%%', text('{'), text('[]'), text('{"Type":"com.apple.asset.data","Identifier":"x","Payload":{}}'), 7] })
    expect(broken).toEqual([
      'Declarations[3] is not valid Base64',
      'Declarations[4] does not decode to JSON',
      'Declarations[5] is not a JSON object',
      'Declarations[6] has no ServerToken string',
      'Declarations[7] must be a Base64 string',
    ])
    const dup = withDeclarations(a, (ds) => [...ds, makeDeclaration('com.apple.asset.data', ds[1]!.Identifier, { Reference: { DataURL: 'https://x.example/' } })])
    expect(check(dup)).toEqual([`Declarations: Identifier ${a.declarations[1]!.Identifier} is used by more than one declaration`])
  })

  it('no activation', () => {
    expect(check(withDeclarations(a, (ds) => ds.slice(1)))).toEqual(['Declarations contain 0 com.apple.activation.simple activations; exactly one is required'])
  })

  it('two activations', () => {
    const doc = withDeclarations(a, (ds) => [...ds, activationFor(ds.slice(1), 'com.example.mdm.esso.activation2')])
    expect(check(doc)).toEqual(['Declarations contain 2 com.apple.activation.simple activations; exactly one is required'])
  })

  it('an activation of another type', () => {
    const doc = withDeclarations(a, (ds) => [...ds, makeDeclaration('com.apple.activation.other', 'com.example.other', {})])
    expect(check(doc)).toEqual(['Declarations contain a com.apple.activation.other activation; only one com.apple.activation.simple is allowed'])
  })

  it('activation missing a configuration, or listing one that is not there', () => {
    const missing = withDeclarations(a, (ds) => [activationFor([ds[1]!]), ds[1]!, ds[2]!])
    expect(check(missing)).toEqual([
      `activation com.example.mdm.esso.activation does not list configuration ${a.declarations[2]!.Identifier} (com.apple.configuration.legacy); StandardConfigurations must list every configuration`,
    ])
    const extra = withDeclarations(a, (ds) => [makeDeclaration('com.apple.activation.simple', ds[0]!.Identifier, { StandardConfigurations: [ds[1]!.Identifier, ds[2]!.Identifier, 'com.example.gone'] }), ds[1]!, ds[2]!])
    expect(check(extra)).toEqual(['activation com.example.mdm.esso.activation lists com.example.gone in StandardConfigurations, but Declarations hold no configuration with that Identifier'])
  })

  it('AppStoreID that does not equal iTunesStoreID, or is not a string', () => {
    const app = a.declarations[1]!
    const mismatch = withDeclarations(a, (ds) => [ds[0]!, makeDeclaration(app.Type, app.Identifier, { ...app.Payload, AppStoreID: '111' }), ds[2]!])
    expect(check(mismatch)).toEqual([`app configuration ${app.Identifier}: AppStoreID "111" does not equal iTunesStoreID 123456789`])
    const numeric = withDeclarations(a, (ds) => [ds[0]!, makeDeclaration(app.Type, app.Identifier, { ...app.Payload, AppStoreID: 123456789 }), ds[2]!])
    expect(check(numeric)).toEqual([`app configuration ${app.Identifier}: AppStoreID must be a string (the iTunesStoreID written as a string)`])
  })

  it('two app configurations in the standard document', () => {
    const doc = withDeclarations(a, (ds) => {
      const second = makeDeclaration(ds[1]!.Type, 'com.example.mdm.esso.app2', ds[1]!.Payload)
      return [activationFor([ds[1]!, ds[2]!, second]), ds[1]!, ds[2]!, second]
    })
    expect(check(doc)).toEqual(['Declarations contain 2 com.apple.configuration.app.managed configurations; exactly one is required'])
  })

  it('missing referenced asset, or an asset of the wrong type', () => {
    const app = a.declarations[1]!
    const missing = withDeclarations(a, (ds) => [ds[0]!, makeDeclaration(app.Type, app.Identifier, { ...app.Payload, LegacyAppConfigAssetReference: 'com.example.config' }), ds[2]!])
    expect(check(missing)).toEqual([`app configuration ${app.Identifier} references asset com.example.config (LegacyAppConfigAssetReference), which is not in Declarations`])
    const identity = makeDeclaration('com.apple.asset.credential.identity', 'com.example.identity', {})
    const wrongType = withDeclarations(a, (ds) => [
      ds[0]!,
      makeDeclaration(app.Type, app.Identifier, { ...app.Payload, ExtensionConfigs: { 'com.example.sso.extension (ABCDE12345)': { Certificates: [{ Identifier: 'ca', AssetReference: identity.Identifier }] } } }),
      ds[2]!,
      identity,
    ])
    expect(check(wrongType)).toEqual([
      `app configuration ${app.Identifier}: ExtensionConfigs["com.example.sso.extension (ABCDE12345)"].Certificates[0].AssetReference references com.apple.asset.credential.identity asset com.example.identity; it needs com.apple.asset.credential.certificate`,
    ])
  })

  it('no legacy configuration', () => {
    expect(check(withDeclarations(a, (ds) => [activationFor([ds[1]!]), ds[1]!]))).toEqual([
      'Declarations contain no com.apple.configuration.legacy configuration; at least one is required',
    ])
  })

  it('legacy profile with a non-SSO payload', () => {
    const bad = signedProfile(signer, [redirectPayload, wifiPayload])
    const url = a.declarations[2]!.Payload.ProfileURL as string
    expect(validateEssoDocument(a.document, 'standard', { unwrapProfile, legacyProfile: (u) => (u === url ? bad : undefined) })).toEqual([
      `the profile of legacy configuration ${a.declarations[2]!.Identifier} contains a com.apple.wifi.managed payload; only com.apple.extensiblesso and certificate payloads are allowed`,
    ])
  })

  it('legacy ProfileURL not https, or not served here', () => {
    const legacy = a.declarations[2]!
    const withUrl = (url: string) => withDeclarations(a, (ds) => [ds[0]!, ds[1]!, makeDeclaration(legacy.Type, legacy.Identifier, { ProfileURL: url })])
    expect(check(withUrl('http://mdm.example.com/profile'))).toEqual([`legacy configuration ${legacy.Identifier}: ProfileURL must be an https:// URL (http:// only on a loopback host)`])
    expect(check(withUrl('https://mdm.example.com/elsewhere'))).toEqual([`legacy configuration ${legacy.Identifier}: this server serves no profile at https://mdm.example.com/elsewhere`])
    // Loopback http is for tests and development.
    const local = build({}, 'standard', { legacyProfileUrl: (k) => `http://127.0.0.1:3000/esso/${k}` })
    expect(validate(local.document, 'standard', local.legacyProfiles, (k) => `http://127.0.0.1:3000/esso/${k}`)).toEqual([])
  })

  it('developer document: AppIDs missing or malformed', () => {
    const { AppIDs: _, ...rest } = dev.document
    expect(check(rest, 'developer')).toContain('AppIDs is required in the developer document: an array of at least one App ID')
    expect(check({ ...dev.document, AppIDs: ['ABCD1234.com.example.sso'] }, 'developer')).toContain(
      'AppIDs: "ABCD1234.com.example.sso" is not an App ID (TEAMID.bundle.id, the Team ID being 10 upper-case letters or digits)',
    )
    // iTunesStoreID is ignored in test mode (esso.yaml): not an error.
    expect(check({ ...dev.document, iTunesStoreID: 'anything' }, 'developer')).toEqual([])
  })

  it('developer app configuration with a wrong BundleID, or none', () => {
    const app = dev.declarations[1]!
    const wrong = withDeclarations(dev, (ds) => [ds[0]!, makeDeclaration(app.Type, app.Identifier, { BundleID: 'com.example.other' }), ds[2]!])
    expect(check(wrong, 'developer')).toEqual([
      `app configuration ${app.Identifier} has BundleID com.example.other, which matches none of the AppIDs`,
      'no com.apple.configuration.app.managed configuration has BundleID com.example.sso; every App ID needs one',
    ])
    const byStoreId = withDeclarations(dev, (ds) => [ds[0]!, makeDeclaration(app.Type, app.Identifier, { AppStoreID: '123456789' }), ds[2]!])
    expect(check(byStoreId, 'developer')).toEqual([
      'no com.apple.configuration.app.managed configuration has BundleID com.example.sso; every App ID needs one',
      `app configuration ${app.Identifier} has no BundleID; in the developer document each app configuration names its app by BundleID`,
    ])
  })
})
