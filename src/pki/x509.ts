/**
 * Creating X.509 certificates (RFC 5280): the server's own identities (`createSelfSigned`) and, through
 * `CertificateSigner`, devices' (once per enrollment). Both are written with the DER writer and signed by
 * OpenSSL off the main thread. Pure: no Fastify, no Prisma. Keys are node:crypto KeyObjects.
 */
import { X509Certificate, constants, createHash, generateKeyPair, randomBytes, sign as cryptoSign, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import { certificateParts } from './certificate.js'
import { contentOf, der, octetsOf, parseDer, Tag, tlv } from './der.js'
import { nameDer, type DistinguishedName } from './names.js'
import { OID } from './oids.js'

const generateKeyPairAsync = promisify(generateKeyPair)

export interface KeyPair {
  publicKey: KeyObject
  privateKey: KeyObject
}

/** A certificate with its private key, as the server holds its own identities. */
export interface Identity {
  certificate: X509Certificate
  privateKey: KeyObject
  /** Intermediates between `certificate` and a root, sent along in CMS structures. */
  chain: X509Certificate[]
}

export async function generateRsaKeyPair(modulusLength = 2048): Promise<KeyPair> {
  return generateKeyPairAsync('rsa', { modulusLength, publicExponent: 0x10001 })
}

/** 128 random bits as a positive DER INTEGER in hex (top bit cleared so no padding byte is needed). */
export function randomSerialHex(): string {
  const bytes = randomBytes(16)
  bytes[0]! &= 0x7f
  if (bytes[0] === 0) bytes[0] = 0x01
  return bytes.toString('hex')
}


/**
 * Issues certificates under `issuer` (SCEP issuance, one per device request). The TBSCertificate is
 * written with the DER writer and signed by OpenSSL off the main thread: a JavaScript certificate
 * generator (@peculiar/x509) was measured at 6.5 ms per certificate, almost all of it on the event loop,
 * against about 0.5 ms this way. The issuer's name and key identifier are read once.
 */
export class CertificateSigner {
  private constructor(
    readonly issuer: X509Certificate,
    private readonly privateKey: KeyObject,
    private readonly issuerNameDer: Buffer,
    private readonly authorityKeyId: Buffer,
  ) {}

  static async create(issuer: Identity | { certificate: X509Certificate; privateKey: KeyObject }): Promise<CertificateSigner> {
    if (issuer.privateKey.asymmetricKeyType !== 'rsa') throw new Error('the issuing key must be RSA')
    const parts = certificateParts(issuer.certificate.raw)
    const ski = parts.extensions.get(OID.subjectKeyIdentifier)
    const keyId = ski ? octetsOf(parseDer(ski.value)) : keyIdentifier(parts.spkiDer)
    return new CertificateSigner(issuer.certificate, issuer.privateKey, parts.subjectDer, keyId)
  }

  /** Issues a certificate for `publicKey` (RSA or EC), signed by this signer's key, with AKI from the issuer. */
  async issue(params: IssueParams): Promise<X509Certificate> {
    return new X509Certificate(await this.issueDer(params))
  }

  /**
   * `issue` without parsing the result: node's X509Certificate constructor costs about 0.3 ms, which a
   * caller that only stores and forwards the DER need not pay.
   */
  issueDer(params: IssueParams): Promise<Buffer> {
    return writeCertificate(params, { nameDer: this.issuerNameDer, privateKey: this.privateKey, keyId: this.authorityKeyId })
  }
}

/**
 * Writes and signs a certificate. `issuer.keyId` becomes the authorityKeyIdentifier; a self-signed
 * certificate has none.
 */
async function writeCertificate(params: IssueParams, issuer: { nameDer: Buffer; privateKey: KeyObject; keyId?: Buffer }): Promise<Buffer> {
  const spki = params.spkiDer ?? params.publicKey.export({ type: 'spki', format: 'der' })
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)),
    der.integer(params.serialHex ?? randomSerialHex()),
    SHA256_WITH_RSA,
    issuer.nameDer,
    der.sequence(x509Time(params.notBefore), x509Time(params.notAfter)),
    nameDer(params.subject),
    spki,
    der.explicit(
      3,
      der.sequence(
        ...extensionsDer(params),
        extension(OID.subjectKeyIdentifier, false, der.octetString(keyIdentifier(spki))),
        ...(issuer.keyId ? [extension(OID.authorityKeyIdentifier, false, der.sequence(der.implicit(0, false, issuer.keyId)))] : []),
      ),
    ),
  )
  const signature = await signAsync('sha256', tbs, { key: issuer.privateKey, padding: constants.RSA_PKCS1_PADDING })
  return der.sequence(tbs, SHA256_WITH_RSA, der.bitString(signature))
}

const signAsync = promisify(cryptoSign)

const SHA256_WITH_RSA = der.sequence(der.oid(OID.sha256WithRSAEncryption), der.null())

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value. */
function keyIdentifier(spkiDer: Uint8Array): Buffer {
  const bits = contentOf(parseDer(spkiDer).children[1]!)
  return createHash('sha1').update(bits.subarray(1)).digest()
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return der.sequence(der.oid(oid), ...(critical ? [der.boolean(true)] : []), der.octetString(value))
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5). */
function x509Time(date: Date): Buffer {
  if (date.getUTCFullYear() < 2050) return der.utcTime(date)
  const s = date.toISOString().replace(/[-:T]/g, '').slice(0, 14)
  return tlv(0, false, Tag.GENERALIZED_TIME, Buffer.from(`${s}Z`, 'latin1'))
}

/** KeyUsage bit positions (RFC 5280 4.2.1.3). */
const KEY_USAGE_BITS = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 } as const

const EKU_OID = { clientAuth: OID.clientAuth, serverAuth: OID.serverAuth, emailProtection: OID.emailProtection, codeSigning: OID.codeSigning } as const

/** basicConstraints and keyUsage (critical), extendedKeyUsage when asked for. */
function extensionsDer(params: IssueParams): Buffer[] {
  let bits = 0
  for (const u of params.keyUsage) bits |= 0x80 >> KEY_USAGE_BITS[u]
  // DER named bit list: no trailing zero bits (X.690 11.2.2).
  let unused = 0
  while (unused < 7 && !((bits >> unused) & 1)) unused++
  const out = [
    extension(OID.basicConstraints, true, params.ca ? der.sequence(der.boolean(true)) : der.sequence()),
    extension(OID.keyUsage, true, der.bitString(Buffer.from([bits]), unused)),
  ]
  if (params.extendedKeyUsage?.length) {
    out.push(extension(OID.extKeyUsage, false, der.sequence(...params.extendedKeyUsage.map((u) => der.oid(EKU_OID[u])))))
  }
  return out
}

export interface IssueParams {
  /** The subject, e.g. `[['CN', 'device'], ['O', 'Example']]`. */
  subject: DistinguishedName
  publicKey: KeyObject
  /**
   * `publicKey` as SubjectPublicKeyInfo DER when the caller already has it (from a CSR): OpenSSL 3
   * takes about 0.2 ms to encode a key, which issuing per request need not pay twice.
   */
  spkiDer?: Uint8Array
  notBefore: Date
  notAfter: Date
  serialHex?: string
  ca?: boolean
  keyUsage: ('digitalSignature' | 'keyEncipherment' | 'keyCertSign' | 'cRLSign')[]
  extendedKeyUsage?: ('clientAuth' | 'serverAuth' | 'emailProtection' | 'codeSigning')[]
}

/** A self-signed certificate (the generated SCEP CA and profile signer). */
export async function createSelfSigned(
  params: Omit<IssueParams, 'publicKey'> & { keys: KeyPair },
): Promise<X509Certificate> {
  if (params.keys.privateKey.asymmetricKeyType !== 'rsa') throw new Error('the signing key must be RSA')
  const issued = await writeCertificate({ ...params, publicKey: params.keys.publicKey }, { nameDer: nameDer(params.subject), privateKey: params.keys.privateKey })
  return new X509Certificate(issued)
}
