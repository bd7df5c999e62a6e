/**
 * Enrollment SSO and declarative management through the real app (issue 13, PROTOCOL.md sections 5
 * and 9): the enroll 401 carries X-Apple-MDM-ESSO for the platforms that have it, the document behind it
 * obeys Apple's rules (its profile verified by openssl), and an enrolled device that syncs is served the
 * very declarations its document carried. Status reports are kept; a changed set reaches enrollments.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { signCms } from '../../src/pki/cms.js'
import { createSelfSigned, generateRsaKeyPair } from '../../src/pki/x509.js'
import { validateEssoDocument, type Declaration } from '../../src/protocol/esso.js'
import { parsePlistDict, type PlistDict } from '../../src/protocol/plist.js'
import { admin, ADMIN_TOKEN } from '../helpers/admin.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'
import { activeDevice, type Device } from '../helpers/device.js'
import { enrollBody, postEnroll } from '../helpers/enroll.js'
import { openssl } from '../helpers/openssl.js'

const dir = mkdtempSync(path.join(tmpdir(), 'esso-e2e-'))
const ssoJson = path.join(dir, 'sso.json')
writeFileSync(ssoJson, JSON.stringify({ ExtensionIdentifier: 'com.example.sso.extension', TeamIdentifier: 'ABCDE12345', Type: 'Redirect', URLs: ['https://login.example.com/'] }))
const ESSO = { ESSO_EXTENSIBLE_SSO: ssoJson, ESSO_ITUNES_STORE_ID: '123456789', ESSO_ASSOCIATED_DOMAINS: 'authsrv:login.example.com' }

let t: TestApp
beforeAll(async () => {
  t = await buildTestApp({ env: { ADMIN_API_TOKEN: ADMIN_TOKEN, ...ESSO } })
})
afterAll(async () => t.close())

/** `openssl cms -verify` against the server's profile signer: the content of a signed profile. */
function verified(signed: Buffer): Buffer {
  const o = openssl()
  try {
    return o.run(['cms', '-verify', '-inform', 'DER', '-in', o.file('p.der', signed), '-CAfile', o.file('ca.pem', t.app.keys.profileSigner.certificate.toString()), '-purpose', 'any'])
  } finally {
    o.close()
  }
}

async function selfSignedBody(product: string, version: string) {
  const keys = await generateRsaKeyPair()
  const certificate = await createSelfSigned({ subject: [['CN', `${product} test`]], keys, notBefore: new Date(), notAfter: new Date(Date.now() + 86400_000), keyUsage: ['digitalSignature'] })
  const content = `<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>PRODUCT</key><string>${product}</string><key>VERSION</key><string>${version}</string></dict></plist>`
  return signCms({ content: Buffer.from(content), certificate, privateKey: keys.privateKey, digest: 'sha1' })
}

const ddm = (device: Device, endpoint: string, extra: Record<string, Uint8Array> = {}) =>
  device.put(device.message({ MessageType: 'DeclarativeManagement', Endpoint: endpoint, ...extra }))

describe('the challenge', () => {
  it('carries X-Apple-MDM-ESSO for an iPhone (the recorded body), and for visionOS 2 but not 1, never for a Mac', async () => {
    const phone = await postEnroll(t.app, { body: enrollBody })
    expect(phone.statusCode).toBe(401)
    expect(phone.headers['x-apple-mdm-esso']).toBe(t.app.urls.esso(t.app.defaultTeam.enrollmentToken))
    expect(phone.headers['x-apple-mdm-esso-developer']).toBeUndefined()
    const mac = await postEnroll(t.app, { body: await selfSignedBody('MacBookPro18,3', '24B83') })
    expect(mac.statusCode).toBe(401)
    expect(mac.headers['x-apple-mdm-esso']).toBeUndefined()
    expect(mac.headers['x-apple-mdm-esso-developer']).toBeUndefined()
    expect((await postEnroll(t.app, { body: await selfSignedBody('RealityDevice14,1', '22N320') })).headers['x-apple-mdm-esso']).toBeTruthy()
    expect((await postEnroll(t.app, { body: await selfSignedBody('RealityDevice14,1', '21N305') })).headers['x-apple-mdm-esso']).toBeUndefined()
  })
})

describe('the document', () => {
  let doc: Record<string, unknown>
  beforeAll(async () => {
    const res = await t.app.inject(new URL(t.app.urls.esso(t.app.defaultTeam.enrollmentToken)).pathname)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('application/json')
    doc = res.json()
  })

  it('obeys every rule of Enrollment SSO; its profile verifies with openssl and holds only the SSO payload', async () => {
    const legacy = async (url: string) => (await t.app.inject(new URL(url).pathname)).rawPayload
    const legacyProfiles = new Map<string, Buffer>()
    for (const d of (doc.Declarations as string[]).map((b) => JSON.parse(Buffer.from(b, 'base64').toString()) as Declaration)) {
      if (d.Type === 'com.apple.configuration.legacy') legacyProfiles.set(d.Payload.ProfileURL as string, await legacy(d.Payload.ProfileURL as string))
    }
    expect(legacyProfiles.size).toBe(1)
    expect(validateEssoDocument(doc, 'standard', { unwrapProfile: verified, legacyProfile: (url) => legacyProfiles.get(url) })).toEqual([])
    expect(doc.iTunesStoreID).toBe(123456789)
    const profile = parsePlistDict(verified(Buffer.from(doc.ConfigurationProfile as string, 'base64')))
    expect((profile.PayloadContent as PlistDict[]).map((p) => p.PayloadType)).toEqual(['com.apple.extensiblesso'])
  })

  it('is served the same declarations by declarative management after enrollment', async () => {
    const fromDoc = (doc.Declarations as string[]).map((b) => JSON.parse(Buffer.from(b, 'base64').toString()) as Declaration)
    const device = await activeDevice(t.app)
    const tokens = await ddm(device, 'tokens')
    expect(tokens.statusCode).toBe(200)
    const items = (await ddm(device, 'declaration-items')).json()
    expect(items.DeclarationsToken).toBe(tokens.json().SyncTokens.DeclarationsToken)
    const listed = [...items.Declarations.Activations, ...items.Declarations.Configurations, ...items.Declarations.Assets, ...items.Declarations.Management]
    expect(listed.map((i: { Identifier: string }) => i.Identifier).sort()).toEqual(fromDoc.map((d) => d.Identifier).sort())
    for (const d of fromDoc) {
      const category = d.Type.split('.')[2]
      const served = await ddm(device, `declaration/${category}/${d.Identifier}`)
      expect(served.statusCode, d.Identifier).toBe(200)
      expect(served.json()).toEqual(d)
    }
    // A status report is kept and shown.
    const report = { StatusItems: { management: { 'client-capabilities': { supported: true } } }, Errors: [] }
    const status = await ddm(device, 'status', { Data: new Uint8Array(Buffer.from(JSON.stringify(report))) })
    expect(status.statusCode).toBe(204)
    const enrollment = (await admin(t.app, 'GET', `/enrollments?enrollment_id=${device.enrollmentId}`)).json().items[0]
    expect(enrollment.channels[0].ddm_status).toEqual(report)
  })
})

describe("a team's declarations", () => {
  it('an assigned declaration changes the DeclarationsToken and sends the team\'s enrollments a DeclarativeManagement command', async () => {
    const device = await activeDevice(t.app)
    const before = (await ddm(device, 'tokens')).json().SyncTokens.DeclarationsToken
    const put = await admin(t.app, 'PUT', `/teams/${t.app.defaultTeam.id}/declarations/com.example.test.subscriptions`, {
      Type: 'com.apple.configuration.management.status-subscriptions',
      Payload: { StatusItems: [{ Name: 'device.operating-system.version' }] },
    })
    expect(put.statusCode, put.body).toBe(200)
    const after = (await ddm(device, 'tokens')).json().SyncTokens.DeclarationsToken
    expect(after).not.toBe(before)
    const idle = await device.idle()
    const command = parsePlistDict(idle.body)
    expect((command.Command as PlistDict).RequestType).toBe('DeclarativeManagement')
    const data = JSON.parse(Buffer.from((command.Command as PlistDict).Data as Uint8Array).toString())
    expect(data.SyncTokens.DeclarationsToken).toBe(after)
    const served = await ddm(device, 'declaration/configuration/com.example.test.subscriptions')
    expect(served.json()).toMatchObject({ Type: 'com.apple.configuration.management.status-subscriptions', Identifier: 'com.example.test.subscriptions' })

    expect((await admin(t.app, 'PUT', `/teams/${t.app.defaultTeam.id}/declarations/bad`, { Type: 'com.example.unknown', Payload: {} })).statusCode).toBe(400)
    expect((await admin(t.app, 'DELETE', `/teams/${t.app.defaultTeam.id}/declarations/com.example.test.subscriptions`)).statusCode).toBe(204)
    expect((await ddm(device, 'tokens')).json().SyncTokens.DeclarationsToken).toBe(before)
    expect((await ddm(device, 'declaration/configuration/com.example.test.subscriptions')).statusCode).toBe(404)
  })

  it('per-team settings: refused when they break a rule, {"enabled": false} turns it off, DELETE goes back to the server\'s', async () => {
    const team = (await admin(t.app, 'POST', '/teams', { name: 'ESSO team' })).json()
    const headersOf = async () => (await postEnroll(t.app, { path: new URL(team.enroll_url).pathname })).headers
    expect((await headersOf())['x-apple-mdm-esso']).toBe(t.app.urls.esso(team.enrollment_token))
    const bad = await admin(t.app, 'PUT', `/teams/${team.id}/esso`, { extensible_sso: [{ ExtensionIdentifier: 'x', Type: 'Redirect' }], itunes_store_id: 1 })
    expect(bad.statusCode).toBe(400)
    expect(bad.json().message).toMatch(/URLs/)
    const off = await admin(t.app, 'PUT', `/teams/${team.id}/esso`, { enabled: false })
    expect(off.json()).toMatchObject({ source: 'team', mode: null })
    expect((await headersOf())['x-apple-mdm-esso']).toBeUndefined()
    expect((await t.app.inject(new URL(t.app.urls.esso(team.enrollment_token)).pathname)).statusCode).toBe(404)
    const dev = await admin(t.app, 'PUT', `/teams/${team.id}/esso`, { extensible_sso: [{ ExtensionIdentifier: 'com.example.sso.extension', Type: 'Redirect', URLs: ['https://login.example.com/'] }], developer_app_ids: ['ABCDE12345.com.example.sso'] })
    expect(dev.statusCode, dev.body).toBe(200)
    expect(dev.json()).toMatchObject({ mode: 'developer' })
    const devHeaders = await headersOf()
    expect(devHeaders['x-apple-mdm-esso-developer']).toBe(t.app.urls.essoDeveloper(team.enrollment_token))
    expect(devHeaders['x-apple-mdm-esso']).toBeUndefined()
    const devDoc = (await t.app.inject(new URL(t.app.urls.essoDeveloper(team.enrollment_token)).pathname)).json()
    expect(devDoc.AppIDs).toEqual(['ABCDE12345.com.example.sso'])
    expect(devDoc.iTunesStoreID).toBeUndefined()
    expect(validateEssoDocument(devDoc, 'developer', { unwrapProfile: verified })).toEqual([])
    expect((await admin(t.app, 'DELETE', `/teams/${team.id}/esso`)).json()).toMatchObject({ source: 'server', mode: 'standard' })
  })

  it('an unknown team\'s document or profile is a 404 JSON', async () => {
    for (const url of ['/api/mdm/apple/esso/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', '/api/mdm/apple/esso/developer/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', `/api/mdm/apple/esso/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/profiles/${'0'.repeat(64)}`]) {
      const res = await t.app.inject(url)
      expect(res.statusCode, url).toBe(404)
      expect(res.headers['content-type']).toMatch(/^application\/json/)
    }
  })
})
