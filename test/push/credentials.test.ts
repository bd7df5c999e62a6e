/** Loading the MDM push identity from PEM or PKCS#12 (src/push/credentials.ts). */
import { X509Certificate } from 'node:crypto'
import { createSecureContext } from 'node:tls'
import forge from 'node-forge'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CertificateSigner, createSelfSigned, generateRsaKeyPair, type KeyPair } from '../../src/pki/x509.js'
import { loadPushCredentials, PushCredentialsError, type PushCredentialsProblem } from '../../src/push/credentials.js'
import { createPushIdentity, type PushIdentityFixture } from '../helpers/fake-apns.js'
import { openssl, type OpensslRun } from '../helpers/openssl.js'

const DAY = 86_400_000

let keys: KeyPair
let otherKeys: KeyPair
let identity: PushIdentityFixture
let ssl: OpensslRun

beforeAll(async () => {
  ;[keys, otherKeys] = await Promise.all([generateRsaKeyPair(), generateRsaKeyPair()])
  identity = await createPushIdentity({ keys })
  ssl = openssl()
})
afterAll(() => ssl.close())

function expectProblem(fn: () => unknown, problem: PushCredentialsProblem, message: RegExp): void {
  let caught: unknown
  try {
    fn()
  } catch (err) {
    caught = err
  }
  expect(caught).toBeInstanceOf(PushCredentialsError)
  expect((caught as PushCredentialsError).problem).toBe(problem)
  expect((caught as PushCredentialsError).message).toMatch(message)
}

function p12Of(key: forge.pki.rsa.PrivateKey | null, certPems: string[], password: string): Buffer {
  const asn1 = forge.pkcs12.toPkcs12Asn1(key, certPems.map((p) => forge.pki.certificateFromPem(p)), password, { algorithm: '3des' })
  return Buffer.from(forge.asn1.toDer(asn1).getBytes(), 'binary')
}

describe('PEM', () => {
  it('loads the certificate and key and reads the topic from the subject UID', () => {
    const creds = loadPushCredentials({ certPem: identity.certPem, keyPem: identity.keyPem })
    expect(creds.topic).toBe(identity.topic)
    expect(creds.topic).toMatch(/^com\.apple\.mgmt\.External\.[0-9a-f-]{36}$/)
    expect(creds.certificate.fingerprint256).toBe(identity.certificate.fingerprint256)
    expect(creds.certificate.checkPrivateKey(creds.privateKey)).toBe(true)
    expect(creds.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/)
    expect(creds.certPem).toMatch(/^-----BEGIN CERTIFICATE-----/)
    expect(creds.notAfter.getTime()).toBe(new Date(identity.certificate.validTo).getTime())
    expect(creds.expired).toBe(false)
  })

  it('reads an encrypted key with its passphrase and says so when the passphrase is wrong', () => {
    const encrypted = keys.privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pw' }).toString()
    expect(loadPushCredentials({ certPem: identity.certPem, keyPem: encrypted, passphrase: 'pw' }).topic).toBe(identity.topic)
    expectProblem(() => loadPushCredentials({ certPem: identity.certPem, keyPem: encrypted, passphrase: 'nope' }), 'wrong_password', /passphrase is missing or wrong/)
  })

  it('refuses a key that does not belong to the certificate', () => {
    const keyPem = otherKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    expectProblem(() => loadPushCredentials({ certPem: identity.certPem, keyPem }), 'key_mismatch', /does not belong to the push certificate/)
  })

  it('refuses text that is not a certificate or a key', () => {
    expectProblem(() => loadPushCredentials({ certPem: 'hello', keyPem: identity.keyPem }), 'no_certificate', /not a readable PEM certificate/)
    expectProblem(() => loadPushCredentials({ certPem: identity.certPem, keyPem: 'hello' }), 'no_private_key', /not a readable PEM private key/)
  })
})

describe('PKCS#12', () => {
  it('loads a forge-made .p12 (3DES) with the right password: same certificate, key and topic as the PEM form', () => {
    const fromP12 = loadPushCredentials({ p12: identity.p12, password: identity.password })
    const fromPem = loadPushCredentials({ certPem: identity.certPem, keyPem: identity.keyPem })
    expect(fromP12.topic).toBe(fromPem.topic)
    expect(fromP12.certificate.fingerprint256).toBe(fromPem.certificate.fingerprint256)
    expect(fromP12.keyPem).toBe(fromPem.keyPem)
  })

  it('loads a legacy Keychain-style .p12 (RC2-40 certificates, 3DES key) written by openssl', () => {
    ssl.file('push.pem', identity.certPem)
    ssl.file('push.key', identity.keyPem)
    ssl.run(['pkcs12', '-export', '-legacy', '-in', 'push.pem', '-inkey', 'push.key', '-out', 'legacy.p12', '-passout', 'pass:s3cret'])
    // The reason for node-forge: OpenSSL 3 (so node:crypto and tls) refuses RC2 without the legacy provider.
    expect(() => createSecureContext({ pfx: ssl.read('legacy.p12'), passphrase: 's3cret' })).toThrow(/Unsupported PKCS12/)
    const creds = loadPushCredentials({ p12: ssl.read('legacy.p12'), password: 's3cret' })
    expect(creds.topic).toBe(identity.topic)
    expect(creds.certificate.fingerprint256).toBe(identity.certificate.fingerprint256)
  })

  it('picks the certificate that matches the key when the export carries the issuing chain', async () => {
    const caKeys = await generateRsaKeyPair()
    const ca = await createSelfSigned({ subject: [['CN', 'Push CA']], keys: caKeys, notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY), ca: true, keyUsage: ['keyCertSign'] })
    const issued = await createPushIdentity({ keys, signer: await CertificateSigner.create({ certificate: ca, privateKey: caKeys.privateKey }) })
    const p12 = p12Of(forge.pki.privateKeyFromPem(issued.keyPem), [ca.toString(), issued.certPem], 'pw')
    const creds = loadPushCredentials({ p12, password: 'pw' })
    expect(creds.certificate.fingerprint256).toBe(issued.certificate.fingerprint256)
    expect(creds.topic).toBe(issued.topic)
  })

  it('accepts an empty password', () => {
    const p12 = p12Of(forge.pki.privateKeyFromPem(identity.keyPem), [identity.certPem], '')
    expect(loadPushCredentials({ p12, password: '' }).topic).toBe(identity.topic)
    ssl.file('push.pem', identity.certPem)
    ssl.file('push.key', identity.keyPem)
    ssl.run(['pkcs12', '-export', '-legacy', '-in', 'push.pem', '-inkey', 'push.key', '-out', 'empty.p12', '-passout', 'pass:'])
    expect(loadPushCredentials({ p12: ssl.read('empty.p12'), password: '' }).topic).toBe(identity.topic)
  })

  it('says the password is wrong', () => {
    expectProblem(() => loadPushCredentials({ p12: identity.p12, password: 'wrong' }), 'wrong_password', /PKCS#12 password is wrong/)
  })

  it('says when the file holds no private key', () => {
    const p12 = p12Of(null, [identity.certPem], 'pw')
    expectProblem(() => loadPushCredentials({ p12, password: 'pw' }), 'no_private_key', /no private key/)
  })

  it('says when the key does not belong to the certificate', () => {
    const keyPem = otherKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    const p12 = p12Of(forge.pki.privateKeyFromPem(keyPem), [identity.certPem], 'pw')
    expectProblem(() => loadPushCredentials({ p12, password: 'pw' }), 'key_mismatch', /does not belong to the push certificate/)
  })

  it('says when the bytes are not a PKCS#12 file', () => {
    expectProblem(() => loadPushCredentials({ p12: Buffer.from('not a p12 at all'), password: 'pw' }), 'unreadable', /not a readable PKCS#12 \(\.p12\) file/)
  })
})

describe('topic and validity', () => {
  it('refuses a certificate without a subject UID', async () => {
    const noUid = await createPushIdentity({ keys, topic: null })
    expectProblem(() => loadPushCredentials({ certPem: noUid.certPem, keyPem: noUid.keyPem }), 'no_topic', /has no UID in its subject/)
    expectProblem(() => loadPushCredentials({ p12: noUid.p12, password: noUid.password }), 'no_topic', /not an MDM push certificate/)
  })

  it('refuses an app push certificate (topic without the com.apple.mgmt. prefix)', async () => {
    const app = await createPushIdentity({ keys, topic: 'com.example.app' })
    expectProblem(() => loadPushCredentials({ certPem: app.certPem, keyPem: app.keyPem }), 'bad_topic', /"com\.example\.app" does not start with com\.apple\.mgmt\./)
  })

  it('loads an expired certificate and flags it instead of failing', async () => {
    const old = await createPushIdentity({ keys, notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) })
    const creds = loadPushCredentials({ p12: old.p12, password: old.password })
    expect(creds.expired).toBe(true)
    expect(creds.notAfter.getTime()).toBeLessThan(Date.now())
    expect(loadPushCredentials({ certPem: identity.certPem, keyPem: identity.keyPem }, { now: new Date(Date.now() + 400 * DAY) }).expired).toBe(true)
  })

  it('the topic is the UID as Node itself reads the subject', () => {
    expect(new X509Certificate(identity.certPem).subject).toContain(`UID=${identity.topic}`)
  })
})
