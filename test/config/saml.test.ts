/**
 * SAML and SSO configuration: IdP metadata as a real IdP (samlify) publishes it, the manual
 * alternative, and one line naming the variable for every mistake.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { ConfigError, loadConfig, type Environment } from '../../src/config/index.js'
import { parseIdpMetadata } from '../../src/identity/saml/metadata.js'
import { buildTestApp } from '../helpers/app.js'
import { createTestIdp, generateIdpKeys, type TestIdp } from '../helpers/saml-idp.js'
import { idpAnswer, postCallback, tokenFrom, tokenRecord } from '../helpers/sso.js'

// Some tests here start extra app instances (a database, migrations, keys each): slow on a busy machine.
vi.setConfig({ testTimeout: 90_000 })

const dir = () => mkdtempSync(path.join(tmpdir(), 'byod-mdm-saml-config-'))
const base = (env: Environment = {}): Environment => ({ DATA_DIR: dir(), SERVER_URL: 'https://mdm.example.com', ...env })

function configError(env: Environment): ConfigError {
  try {
    loadConfig(base(env))
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).not.toContain('\n')
    return err as ConfigError
  }
  throw new Error('expected a ConfigError')
}

let idp: TestIdp
beforeAll(async () => {
  idp = await createTestIdp({ entityId: 'https://sts.example.test/tenant/', ssoUrl: 'https://login.example.test/tenant/saml2' })
})

describe('IdP metadata', () => {
  it('reads entity id, HTTP-Redirect SSO URL and signing certificate from a real IdP’s metadata, inline or from a file', () => {
    const inline = loadConfig(base({ SAML_IDP_METADATA: idp.metadata })).sso.saml!
    expect(inline.idp.entityId).toBe('https://sts.example.test/tenant/')
    expect(inline.idp.ssoUrl).toBe('https://login.example.test/tenant/saml2')
    expect(inline.idp.certificates).toHaveLength(1)
    expect(inline.idp.certificates[0]!.replace(/\s/g, '')).toBe(idp.keys.certificatePem.replace(/\s/g, ''))
    const file = path.join(dir(), 'idp.xml')
    writeFileSync(file, idp.metadata)
    expect(loadConfig(base({ SAML_IDP_METADATA: file })).sso.saml!.idp).toEqual(inline.idp)
  })

  it('has defaults that need nothing else: SP entity id = metadata URL, 60 s skew, signed responses', () => {
    const c = loadConfig(base({ SAML_IDP_METADATA: idp.metadata })).sso
    expect(c.saml!.spEntityId).toBe('https://mdm.example.com/api/v1/mdm/sso/metadata')
    expect(c.saml!.clockSkewMs).toBe(60_000)
    expect(c.saml!.wantResponseSigned).toBe(true)
    expect(c.devSignIn).toBe(false)
    expect(c.rateLimitPerMinute).toBe(60)
    expect(loadConfig(base({ SAML_IDP_METADATA: idp.metadata, SAML_SP_ENTITY_ID: 'urn:example:mdm', SAML_CLOCK_SKEW: '2m' })).sso.saml).toMatchObject({ spEntityId: 'urn:example:mdm', clockSkewMs: 120_000 })
  })

  it('names SAML_IDP_METADATA when the metadata is unusable', () => {
    const cases: [string, RegExp][] = [
      ['/nonexistent/idp.xml', /cannot read metadata file/],
      ['<not-closed', /not readable SAML metadata/],
      [`<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${idp.metadata}`, /DOCTYPE/],
      ['<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>', /no IDPSSODescriptor/],
      [idp.metadata.replace(/urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect/g, 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST'), /HTTP-Redirect/],
      [idp.metadata.replace(/<KeyDescriptor[\s\S]*?<\/KeyDescriptor>/g, ''), /no signing certificate/],
    ]
    for (const [value, message] of cases) {
      const err = configError({ SAML_IDP_METADATA: value })
      expect(err.variable).toBe('SAML_IDP_METADATA')
      expect(err.message).toMatch(message)
    }
  })

  it('asks for SAML_SP_KEY when the IdP wants signed AuthnRequests', async () => {
    const strict = idp.metadata.replace(`WantAuthnRequestsSigned="false"`, `WantAuthnRequestsSigned="true"`)
    expect(parseIdpMetadata(strict).wantAuthnRequestsSigned).toBe(true)
    expect(configError({ SAML_IDP_METADATA: strict }).variable).toBe('SAML_SP_KEY')
    const sp = await generateIdpKeys('SP')
    expect(loadConfig(base({ SAML_IDP_METADATA: strict, SAML_SP_CERT: sp.certificatePem, SAML_SP_KEY: sp.privateKeyPem })).sso.saml!.spSigning).toBeDefined()
  })
})

describe('manual IdP settings', () => {
  const manual = (): Environment => ({ SAML_IDP_SSO_URL: idp.ssoUrl, SAML_IDP_ENTITY_ID: idp.entityId, SAML_IDP_CERT: idp.keys.certificatePem })

  it('needs the SSO URL, the entity id and the certificate together, and not alongside metadata', () => {
    expect(loadConfig(base(manual())).sso.saml!.idp).toMatchObject({ entityId: idp.entityId, ssoUrl: idp.ssoUrl })
    expect(configError({ ...manual(), SAML_IDP_ENTITY_ID: undefined }).variable).toBe('SAML_IDP_ENTITY_ID')
    expect(configError({ ...manual(), SAML_IDP_CERT: undefined }).variable).toBe('SAML_IDP_CERT')
    expect(configError({ ...manual(), SAML_IDP_SSO_URL: undefined }).variable).toBe('SAML_IDP_SSO_URL')
    expect(configError({ ...manual(), SAML_IDP_SSO_URL: 'login.example.test' }).variable).toBe('SAML_IDP_SSO_URL')
    expect(configError({ ...manual(), SAML_IDP_CERT: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' }).message).toMatch(/^SAML_IDP_CERT: is not a valid certificate/)
    expect(configError({ ...manual(), SAML_IDP_METADATA: idp.metadata }).variable).toBe('SAML_IDP_METADATA')
  })

  it('signs users in end to end', async () => {
    const t = await buildTestApp({ env: manual() })
    try {
      const { form } = await idpAnswer(t.app, idp, { userIdentifier: 'zoe@example.test' }, { nameId: 'zoe@example.test' })
      expect((await tokenRecord(t.app, tokenFrom(await postCallback(t.app, form)))).user.issuer).toBe(idp.entityId)
    } finally {
      await t.close()
    }
  })
})

describe('development sign-in and policy variables', () => {
  it('is on for a loopback SERVER_URL or with ALLOW_DEV_SIGNIN, never alongside an IdP', () => {
    const d = dir()
    expect(loadConfig({ DATA_DIR: d }).sso.devSignIn).toBe(true)
    expect(loadConfig({ DATA_DIR: d, SERVER_URL: 'http://127.0.0.1:9000' }).sso.devSignIn).toBe(true)
    expect(loadConfig({ DATA_DIR: d, SERVER_URL: 'http://[::1]:9000' }).sso.devSignIn).toBe(true)
    expect(loadConfig(base({ ALLOW_DEV_SIGNIN: 'true' })).sso.devSignIn).toBe(true)
    expect(loadConfig(base({ ALLOW_DEV_SIGNIN: 'true', SAML_IDP_METADATA: idp.metadata })).sso.devSignIn).toBe(false)
    expect(configError({}).variable).toBe('SAML_IDP_METADATA')
    // AUTH_METHOD=oauth2 signs users in at the OIDC provider: no SAML IdP needed, no development sign-in.
    const oauth = loadConfig(base({ AUTH_METHOD: 'oauth2', OIDC_ISSUER: 'https://login.example.com/realm', OIDC_CLIENT_ID: 'mdm', OIDC_CLIENT_SECRET: 's3cret' })).sso
    expect(oauth).toMatchObject({ saml: null, devSignIn: false })
    expect(configError({ SERVER_URL: 'https://localhost.example.com' }).variable).toBe('SAML_IDP_METADATA')
    expect(configError({ ALLOW_DEV_SIGNIN: 'maybe' }).variable).toBe('ALLOW_DEV_SIGNIN')
  })

  it('parses SSO_TEAM_GROUPS, SSO_RATE_LIMIT, SAML_CLOCK_SKEW and SSO_REQUIRE_IDENTIFIER_MATCH or names them', () => {
    const ok = loadConfig(base({ SAML_IDP_METADATA: idp.metadata, SSO_TEAM_GROUPS: '{"Default": ["mdm-users"], "Engineering": ["eng", "sre"]}', SSO_RATE_LIMIT: '5', SSO_REQUIRE_IDENTIFIER_MATCH: 'true' })).sso
    expect(ok).toMatchObject({ teamGroups: { Default: ['mdm-users'], Engineering: ['eng', 'sre'] }, rateLimitPerMinute: 5, requireIdentifierMatch: true })
    const withIdp = { SAML_IDP_METADATA: idp.metadata }
    expect(configError({ ...withIdp, SSO_TEAM_GROUPS: 'Default=mdm-users' }).variable).toBe('SSO_TEAM_GROUPS')
    expect(configError({ ...withIdp, SSO_TEAM_GROUPS: '{"Default": []}' }).variable).toBe('SSO_TEAM_GROUPS')
    expect(configError({ ...withIdp, SSO_TEAM_GROUPS: '["mdm-users"]' }).variable).toBe('SSO_TEAM_GROUPS')
    expect(configError({ ...withIdp, SSO_RATE_LIMIT: '0' }).variable).toBe('SSO_RATE_LIMIT')
    expect(configError({ ...withIdp, SAML_CLOCK_SKEW: '1h' }).variable).toBe('SAML_CLOCK_SKEW')
    expect(configError({ ...withIdp, SSO_REQUIRE_IDENTIFIER_MATCH: 'sometimes' }).variable).toBe('SSO_REQUIRE_IDENTIFIER_MATCH')
  })
})
