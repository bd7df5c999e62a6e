/**
 * The MDM push identity: the certificate Apple's Push Certificates Portal issues for the server, with its
 * private key. It is the TLS client certificate for APNs, and its subject's UID is the push topic that
 * enrolled devices listen on (Apple, "MDM" payload, key `Topic`: "The topic name must begin with the
 * com.apple.mgmt. prefix"; https://developer.apple.com/documentation/devicemanagement/mdm).
 *
 * Administrators have it in one of two forms: PEM certificate + key, or a PKCS#12 exported from Keychain
 * Access. Keychain still writes the legacy PKCS#12 ciphers (RC2-40 for certificates, 3DES for the key),
 * which OpenSSL 3 and therefore node:crypto refuse without the legacy provider, so PKCS#12 is read with
 * node-forge and converted to node:crypto objects straight away.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto'
import forge from 'node-forge'
import { certificateParts } from '../pki/certificate.js'
import { isUniversal, oidOf, parseDer, stringOf, Tag } from '../pki/der.js'
import { OID } from '../pki/oids.js'

export const MDM_TOPIC_PREFIX = 'com.apple.mgmt.'

export type PushCredentialsProblem =
  | 'unreadable'
  | 'wrong_password'
  | 'no_certificate'
  | 'no_private_key'
  | 'key_mismatch'
  | 'no_topic'
  | 'bad_topic'

/** Why the push identity cannot be used, in one sentence an administrator can act on. */
export class PushCredentialsError extends Error {
  constructor(
    readonly problem: PushCredentialsProblem,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'PushCredentialsError'
  }
}

export interface PushCredentials {
  certificate: X509Certificate
  privateKey: KeyObject
  /** The certificate alone, PEM. */
  certPem: string
  /** The private key as unencrypted PKCS#8 PEM (what node:http2 takes). */
  keyPem: string
  /** The APNs topic, `com.apple.mgmt.…`: the certificate subject's UID. */
  topic: string
  notAfter: Date
  /**
   * The certificate is past its notAfter. Not an error: APNs will refuse every push until it is renewed,
   * but the rest of the server works, so the caller starts anyway and says so loudly.
   */
  expired: boolean
}

export type PushCredentialsSource =
  | { certPem: string; keyPem: string; /** for an encrypted PEM key */ passphrase?: string }
  | { p12: Uint8Array; password: string }

export function loadPushCredentials(source: PushCredentialsSource, options: { now?: Date } = {}): PushCredentials {
  const { certificate, privateKey } = 'p12' in source ? readPkcs12(source.p12, source.password) : readPem(source)
  const topic = pushTopicOf(certificate)
  const notAfter = new Date(certificate.validTo)
  return {
    certificate,
    privateKey,
    certPem: certificate.toString(),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    topic,
    notAfter,
    expired: notAfter.getTime() < (options.now ?? new Date()).getTime(),
  }
}

/** The push topic: the subject's UID attribute, which must carry Apple's MDM prefix. */
export function pushTopicOf(certificate: X509Certificate): string {
  const uids = subjectAttributes(certificate.raw, OID.userId)
  if (uids.length === 0) {
    throw new PushCredentialsError('no_topic', `the certificate "${certificate.subject.replace(/\n/g, ', ')}" has no UID in its subject, so it is not an MDM push certificate (expected UID=${MDM_TOPIC_PREFIX}…)`)
  }
  if (uids.length > 1) throw new PushCredentialsError('bad_topic', `the certificate subject has ${uids.length} UID attributes; an MDM push certificate has exactly one`)
  const topic = uids[0]!
  if (!topic.startsWith(MDM_TOPIC_PREFIX) || topic.length === MDM_TOPIC_PREFIX.length) {
    throw new PushCredentialsError('bad_topic', `the certificate's topic "${topic}" does not start with ${MDM_TOPIC_PREFIX}: this is an app push certificate, not an MDM push certificate`)
  }
  return topic
}

/** Values of every `oid` attribute in the certificate's subject (Name, RFC 5280 4.1.2.4). */
function subjectAttributes(certDer: Uint8Array, oid: string): string[] {
  const name = parseDer(certificateParts(certDer).subjectDer)
  const values: string[] = []
  for (const rdn of name.children) {
    for (const atv of rdn.children) {
      const [type, value] = atv.children
      if (type && value && isUniversal(type, Tag.OID) && oidOf(type) === oid) values.push(stringOf(value))
    }
  }
  return values
}

function readPem(source: { certPem: string; keyPem: string; passphrase?: string }): { certificate: X509Certificate; privateKey: KeyObject } {
  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(source.certPem)
  } catch (err) {
    throw new PushCredentialsError('no_certificate', 'the push certificate is not a readable PEM certificate', { cause: err })
  }
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey({ key: source.keyPem, format: 'pem', passphrase: source.passphrase })
  } catch (err) {
    const encrypted = /ENCRYPTED/.test(source.keyPem)
    throw encrypted
      ? new PushCredentialsError('wrong_password', 'the push private key is encrypted and the passphrase is missing or wrong', { cause: err })
      : new PushCredentialsError('no_private_key', 'the push private key is not a readable PEM private key', { cause: err })
  }
  if (!certificate.checkPrivateKey(privateKey)) throw mismatch()
  return { certificate, privateKey }
}

function readPkcs12(p12: Uint8Array, password: string): { certificate: X509Certificate; privateKey: KeyObject } {
  let asn1: forge.asn1.Asn1
  try {
    asn1 = forge.asn1.fromDer(forge.util.createBuffer(Buffer.from(p12).toString('binary')), false)
  } catch (err) {
    throw new PushCredentialsError('unreadable', `the push certificate file is not a readable PKCS#12 (.p12) file: ${(err as Error).message}`, { cause: err })
  }
  const pfx = openPkcs12(asn1, password)
  const bags = pfx.safeContents.flatMap((c) => c.safeBags)
  const certificates = bags.filter((b) => b.type === forge.pki.oids.certBag).map(certificateOf)
  const keys = bags.filter((b) => b.type === forge.pki.oids.pkcs8ShroudedKeyBag || b.type === forge.pki.oids.keyBag).map(privateKeyOf)
  if (certificates.length === 0) throw new PushCredentialsError('no_certificate', 'the PKCS#12 file contains no certificate')
  if (keys.length === 0) {
    throw new PushCredentialsError('no_private_key', 'the PKCS#12 file contains a certificate but no private key: export the certificate together with its key (in Keychain Access, from "My Certificates")')
  }
  // A Keychain export may carry the issuing chain too; the push certificate is the one the key belongs to.
  for (const privateKey of keys) {
    const certificate = certificates.find((c) => c.checkPrivateKey(privateKey))
    if (certificate) return { certificate, privateKey }
  }
  throw mismatch()
}

/**
 * Decrypts the PFX. An empty password is tried both as the empty string and as no password at all:
 * RFC 7292 B.1 encodes "" as two zero bytes, but some exporters use zero bytes instead (OpenSSL tries both).
 */
function openPkcs12(asn1: forge.asn1.Asn1, password: string): forge.pkcs12.Pkcs12Pfx {
  const candidates: (string | undefined)[] = password === '' ? ['', undefined] : [password]
  let lastError: unknown
  for (const candidate of candidates) {
    try {
      return forge.pkcs12.pkcs12FromAsn1(asn1, false, candidate)
    } catch (err) {
      lastError = err
    }
  }
  const message = lastError instanceof Error ? lastError.message : String(lastError)
  if (/password|MAC could not be verified|decrypt/i.test(message)) {
    throw new PushCredentialsError('wrong_password', 'the PKCS#12 password is wrong', { cause: lastError })
  }
  throw new PushCredentialsError('unreadable', `the push certificate file is not a readable PKCS#12 (.p12) file: ${message}`, { cause: lastError })
}

function certificateOf(bag: forge.pkcs12.Bag): X509Certificate {
  // forge keeps the parsed TBSCertificate, so re-encoding gives back the original DER.
  const asn1 = bag.cert ? forge.pki.certificateToAsn1(bag.cert) : bag.asn1
  return new X509Certificate(Buffer.from(forge.asn1.toDer(asn1).getBytes(), 'binary'))
}

function privateKeyOf(bag: forge.pkcs12.Bag): KeyObject {
  // forge parses RSA keys only; any other key type is left as PrivateKeyInfo ASN.1.
  const info = bag.key ? forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(bag.key)) : bag.asn1
  return createPrivateKey({ key: Buffer.from(forge.asn1.toDer(info).getBytes(), 'binary'), format: 'der', type: 'pkcs8' })
}

function mismatch(): PushCredentialsError {
  return new PushCredentialsError('key_mismatch', 'the private key does not belong to the push certificate')
}
