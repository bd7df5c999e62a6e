/**
 * PKCS#10 certification requests (RFC 2986) as they arrive inside a SCEP envelope: parsed with the
 * bounded reader, self-signature checked with node:crypto. Nothing from the CSR except its public key and
 * challengePassword is used for issuance; the subject is read only for logs and tests.
 */
import { verify as cryptoVerify, constants, type KeyObject } from 'node:crypto'
import { child, contentOf, expectUniversal, isContext, oidOf, parseDer, rawOf, stringOf, Tag, type Asn1Node } from '../der.js'
import { OID, SIGNATURE_ALGORITHMS } from '../oids.js'
import { publicKeyFromSpki } from '../public-key.js'
import { ScepRequestError } from './types.js'

const CSR_LIMITS = { maxDepth: 16, maxNodes: 2_000 }

const DIRECTORY_STRINGS = new Set<number>([Tag.PRINTABLE_STRING, Tag.UTF8_STRING, Tag.IA5_STRING, Tag.T61_STRING, Tag.BMP_STRING])

/** RSA keys above this are refused before any signature work (OpenSSL's own limit is 16384). */
const MAX_RSA_BITS = 8192

export interface CertificationRequest {
  der: Buffer
  publicKey: KeyObject
  /** SubjectPublicKeyInfo DER. */
  spkiDer: Buffer
  /** The subject Name DER as the requester wrote it (never copied into a certificate). */
  subjectDer: Buffer
  /** The challengePassword attribute (RFC 2985 section 5.4.1), if present. */
  challengePassword?: string
}

/** Parses and verifies a CSR. Throws ScepRequestError (badMessageCheck or badAlg). */
export function parseCertificationRequest(input: Uint8Array): CertificationRequest {
  let root: Asn1Node
  let info: Asn1Node
  let subjectDer: Buffer
  let spkiDer: Buffer
  let publicKey: KeyObject
  let signatureAlgorithm: string
  let signature: Buffer
  let challengePassword: string | undefined
  try {
    root = expectUniversal(parseDer(input, CSR_LIMITS), Tag.SEQUENCE, 'CertificationRequest')
    info = expectUniversal(child(root, 0, 'CertificationRequest'), Tag.SEQUENCE, 'CertificationRequestInfo')
    subjectDer = Buffer.from(rawOf(expectUniversal(child(info, 1, 'CertificationRequestInfo'), Tag.SEQUENCE, 'subject')))
    spkiDer = Buffer.from(rawOf(expectUniversal(child(info, 2, 'CertificationRequestInfo'), Tag.SEQUENCE, 'subjectPKInfo')))
    const attributes = info.children[3]
    if (attributes && isContext(attributes, 0)) challengePassword = readChallengePassword(attributes)
    signatureAlgorithm = oidOf(child(expectUniversal(child(root, 1, 'CertificationRequest'), Tag.SEQUENCE, 'signatureAlgorithm'), 0, 'AlgorithmIdentifier'))
    const bits = contentOf(expectUniversal(child(root, 2, 'CertificationRequest'), Tag.BIT_STRING, 'signature'))
    if (bits.length < 2 || bits[0] !== 0) throw new Error('signature BIT STRING with unused bits')
    signature = Buffer.from(bits.subarray(1))
  } catch (err) {
    if (err instanceof ScepRequestError) throw err
    throw new ScepRequestError('badMessageCheck', `malformed CSR: ${(err as Error).message}`, { cause: err })
  }
  try {
    publicKey = publicKeyFromSpki(spkiDer)
  } catch (err) {
    throw new ScepRequestError('badMessageCheck', `the CSR public key cannot be read: ${(err as Error).message}`, { cause: err })
  }
  const alg = SIGNATURE_ALGORITHMS[signatureAlgorithm]
  if (!alg?.digest) throw new ScepRequestError('badAlg', `unsupported CSR signature algorithm ${signatureAlgorithm}`)
  if (alg.key !== publicKey.asymmetricKeyType) throw new ScepRequestError('badAlg', `CSR signature algorithm does not match its ${publicKey.asymmetricKeyType} key`)
  if (alg.key === 'rsa' && (publicKey.asymmetricKeyDetails?.modulusLength ?? 0) > MAX_RSA_BITS) {
    throw new ScepRequestError('badRequest', `RSA keys above ${MAX_RSA_BITS} bits are not accepted`)
  }
  let ok = false
  try {
    const tbs = rawOf(info)
    ok =
      alg.key === 'rsa'
        ? cryptoVerify(alg.digest, tbs, { key: publicKey, padding: constants.RSA_PKCS1_PADDING }, signature)
        : cryptoVerify(alg.digest, tbs, { key: publicKey, dsaEncoding: 'der' }, signature)
  } catch (err) {
    throw new ScepRequestError('badMessageCheck', `CSR signature check failed: ${(err as Error).message}`, { cause: err })
  }
  if (!ok) throw new ScepRequestError('badMessageCheck', 'the CSR self-signature does not verify')
  return {
    der: Buffer.from(rawOf(root)),
    publicKey,
    spkiDer,
    subjectDer,
    challengePassword,
  }
}

/** attributes [0] IMPLICIT SET OF Attribute; challengePassword has exactly one DirectoryString value. */
function readChallengePassword(attributes: Asn1Node): string | undefined {
  let found: string | undefined
  for (const attr of attributes.children) {
    expectUniversal(attr, Tag.SEQUENCE, 'Attribute')
    if (oidOf(child(attr, 0, 'Attribute')) !== OID.challengePassword) continue
    if (found !== undefined) throw new Error('challengePassword appears twice')
    const values = expectUniversal(child(attr, 1, 'Attribute'), Tag.SET, 'AttributeValues')
    if (values.children.length !== 1) throw new Error('challengePassword must have exactly one value')
    const value = values.children[0]!
    if (value.tagClass !== 0 || !DIRECTORY_STRINGS.has(value.tagNumber)) throw new Error('challengePassword is not a DirectoryString')
    found = stringOf(value)
  }
  return found
}
