/**
 * Creating X.509 certificates (RFC 5280) for the server's own identities and, through `issueCertificate`,
 * for devices. Pure: no Fastify, no Prisma. Keys are node:crypto KeyObjects; signing goes through
 * WebCrypto (OpenSSL underneath), so it is native speed.
 */
import 'reflect-metadata'
import { X509Certificate, generateKeyPair, randomBytes, webcrypto, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import * as x509 from '@peculiar/x509'

// `as never`: the parameter's type is the DOM's Crypto, which exists only when some dependency's types
// load lib "dom" (xpath's do, via samlify); node's webcrypto is that object at run time.
x509.cryptoProvider.set(webcrypto as never)

type CryptoKey = webcrypto.CryptoKey

const generateKeyPairAsync = promisify(generateKeyPair)

const RSA_SHA256: webcrypto.RsaHashedImportParams = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }

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

async function toCryptoKey(key: KeyObject, usage: 'sign' | 'verify'): Promise<CryptoKey> {
  if (usage === 'sign') {
    return webcrypto.subtle.importKey('pkcs8', key.export({ type: 'pkcs8', format: 'der' }), RSA_SHA256, false, ['sign']) as Promise<CryptoKey>
  }
  return webcrypto.subtle.importKey('spki', key.export({ type: 'spki', format: 'der' }), RSA_SHA256, true, ['verify']) as Promise<CryptoKey>
}

/**
 * A signer that holds its WebCrypto key, so repeated issuance (SCEP) does not re-import the key.
 */
export class CertificateSigner {
  private constructor(
    readonly issuer: X509Certificate,
    private readonly signingKey: CryptoKey,
  ) {}

  static async create(issuer: Identity | { certificate: X509Certificate; privateKey: KeyObject }): Promise<CertificateSigner> {
    return new CertificateSigner(issuer.certificate, await toCryptoKey(issuer.privateKey, 'sign'))
  }

  /** Issues a certificate for `publicKey`, signed by this signer's key, with AKI from the issuer. */
  async issue(params: IssueParams): Promise<X509Certificate> {
    const issuer = new x509.X509Certificate(this.issuer.raw)
    const publicKey = await toCryptoKey(params.publicKey, 'verify')
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: params.serialHex ?? randomSerialHex(),
      subject: params.subject,
      issuer: issuer.subject,
      notBefore: params.notBefore,
      notAfter: params.notAfter,
      signingAlgorithm: RSA_SHA256,
      publicKey,
      signingKey: this.signingKey,
      extensions: [
        ...extensionsFor(params),
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(issuer),
      ],
    })
    return new X509Certificate(Buffer.from(cert.rawData))
  }
}

export interface IssueParams {
  /** RFC 4514-style distinguished name, e.g. `CN=device, O=Example`. */
  subject: string
  publicKey: KeyObject
  notBefore: Date
  notAfter: Date
  serialHex?: string
  ca?: boolean
  keyUsage: ('digitalSignature' | 'keyEncipherment' | 'keyCertSign' | 'cRLSign')[]
  extendedKeyUsage?: ('clientAuth' | 'serverAuth' | 'emailProtection' | 'codeSigning')[]
}

const KEY_USAGE_FLAGS = {
  digitalSignature: x509.KeyUsageFlags.digitalSignature,
  keyEncipherment: x509.KeyUsageFlags.keyEncipherment,
  keyCertSign: x509.KeyUsageFlags.keyCertSign,
  cRLSign: x509.KeyUsageFlags.cRLSign,
} as const

const EKU_OIDS = {
  clientAuth: x509.ExtendedKeyUsage.clientAuth,
  serverAuth: x509.ExtendedKeyUsage.serverAuth,
  emailProtection: x509.ExtendedKeyUsage.emailProtection,
  codeSigning: x509.ExtendedKeyUsage.codeSigning,
} as const

function extensionsFor(params: IssueParams): x509.Extension[] {
  const flags = params.keyUsage.reduce((acc, u) => acc | KEY_USAGE_FLAGS[u], 0)
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(params.ca ?? false, undefined, true),
    new x509.KeyUsagesExtension(flags, true),
  ]
  if (params.extendedKeyUsage?.length) {
    extensions.push(new x509.ExtendedKeyUsageExtension(params.extendedKeyUsage.map((u) => EKU_OIDS[u]), false))
  }
  return extensions
}

/** A self-signed certificate (the generated SCEP CA and profile signer). */
export async function createSelfSigned(
  params: Omit<IssueParams, 'publicKey'> & { keys: KeyPair },
): Promise<X509Certificate> {
  const keys = {
    publicKey: await toCryptoKey(params.keys.publicKey, 'verify'),
    privateKey: await toCryptoKey(params.keys.privateKey, 'sign'),
  }
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: params.serialHex ?? randomSerialHex(),
    name: params.subject,
    notBefore: params.notBefore,
    notAfter: params.notAfter,
    signingAlgorithm: RSA_SHA256,
    keys,
    extensions: [...extensionsFor({ ...params, publicKey: params.keys.publicKey }), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)],
  })
  return new X509Certificate(Buffer.from(cert.rawData))
}

/** Escapes a value for use inside an RFC 4514 distinguished-name string. */
export function escapeDnValue(value: string): string {
  return value
    .replace(/[\\,+"<>;=]/g, (c) => `\\${c}`)
    .replace(/^[ #]/, (c) => `\\${c}`)
    .replace(/ $/, '\\ ')
    .replace(/[\u0000-\u001f]/g, '')
}
