/** Settings, a real CMS signer and profile helpers shared by the Enrollment SSO tests. */
import { parseSignedData, signCms, verifySingleSigner } from '../../src/pki/cms.js'
import { createSelfSigned, generateRsaKeyPair } from '../../src/pki/x509.js'
import type { EssoBuildContext, EssoSettings } from '../../src/protocol/esso.js'
import { buildPlist, type PlistDict } from '../../src/protocol/plist.js'
import type { X509Certificate, KeyObject } from 'node:crypto'

export interface Signer {
  certificate: X509Certificate
  privateKey: KeyObject
}

export async function createSigner(cn = 'ESSO test profile signer'): Promise<Signer> {
  const keys = await generateRsaKeyPair()
  const notBefore = new Date(Date.now() - 60_000)
  const certificate = await createSelfSigned({ subject: [['CN', cn]], keys, notBefore, notAfter: new Date(notBefore.getTime() + 86400_000), keyUsage: ['digitalSignature'] })
  return { certificate, privateKey: keys.privateKey }
}

export function signWith(signer: Signer): (content: Buffer) => Buffer {
  return (content) => signCms({ content, certificate: signer.certificate, privateKey: signer.privateKey })
}

/** What the server would pass as `unwrapProfile`: the content of a CMS whose signature verifies. */
export function unwrapProfile(signed: Buffer): Buffer {
  return verifySingleSigner(parseSignedData(signed)).content
}

/** The content of one com.apple.extensiblesso payload, as an administrator writes it. */
export const redirectPayload: PlistDict = {
  PayloadType: 'com.apple.extensiblesso',
  ExtensionIdentifier: 'com.example.sso.extension',
  TeamIdentifier: 'ABCDE12345',
  Type: 'Redirect',
  URLs: ['https://login.example.com/'],
  ExtensionData: { tenant: 'example', retries: 3 },
}

export const credentialPayload: PlistDict = {
  PayloadType: 'com.apple.extensiblesso',
  ExtensionIdentifier: 'com.apple.AppSSOKerberos.KerberosExtension',
  Type: 'Credential',
  Realm: 'EXAMPLE.COM',
  Hosts: ['.example.com'],
}

export function rootCertificatePayload(signer: Signer): PlistDict {
  return { PayloadType: 'com.apple.security.root', PayloadCertificateFileName: 'example-ca.cer', PayloadContent: new Uint8Array(signer.certificate.raw) }
}

export function settingsFor(signer: Signer, overrides: Partial<EssoSettings> = {}): EssoSettings {
  return {
    itunesStoreId: 123456789,
    associatedDomains: ['authsrv:login.example.com'],
    directDownloads: false,
    ssoPayloads: [redirectPayload],
    certificatePayloads: [rootCertificatePayload(signer)],
    delivery: 'both',
    developerAppIds: ['ABCDE12345.com.example.sso'],
    ...overrides,
  }
}

export function contextFor(signer: Signer, overrides: Partial<EssoBuildContext> = {}): EssoBuildContext {
  return {
    identifierPrefix: 'com.example.mdm',
    orgName: 'Example Org',
    legacyProfileUrl: (key) => `https://mdm.example.com/api/mdm/apple/esso/profiles/${key}`,
    sign: signWith(signer),
    ...overrides,
  }
}

/** A signed profile with exactly these payloads (each given every Payload* key), Base64. */
export function signedProfile(signer: Signer, payloads: PlistDict[]): Buffer {
  const content = payloads.map((p, i) => ({ PayloadIdentifier: `com.example.test.${i}`, PayloadUUID: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, PayloadVersion: 1, ...p }))
  const profile: PlistDict = { PayloadType: 'Configuration', PayloadVersion: 1, PayloadIdentifier: 'com.example.test', PayloadUUID: '00000000-0000-4000-8000-999999999999', PayloadContent: content }
  return signWith(signer)(Buffer.from(buildPlist(profile), 'utf8'))
}

export const wifiPayload: PlistDict = { PayloadType: 'com.apple.wifi.managed', SSID_STR: 'Example', EncryptionType: 'None' }
