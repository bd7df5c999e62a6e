/**
 * SCEP test setup through our own services (a user, an access token, one-time challenges) and requests
 * built with the requester side of the codec (src/pki/scep/client.ts), encrypted to the app's CA.
 */
import { generateKeyPairSync, type KeyObject, type X509Certificate } from 'node:crypto'
import type { App } from '../../src/app.js'
import type { CipherName } from '../../src/pki/scep/ciphers.js'
import { buildCsr, buildPkiMessage, nameDer, readCertRep, selfSignedCertificate, type CertRepReply, type SignerIdentity } from '../../src/pki/scep/client.js'
import { MessageType } from '../../src/pki/scep/types.js'
import { createScepChallenge } from '../../src/services/challenges.js'
import { mintAccessToken, upsertUser } from '../../src/services/tokens.js'

export const SCEP_PATH = '/mdm/apple/scep'

export interface Enrollment {
  userId: string
  teamId: string
  accessTokenId: string
  /** The access token itself (what the device presents as bearer). */
  token: string
  /** Mints a fresh one-time challenge for this enrollment; `expiresInMs` may be negative. */
  challenge(expiresInMs?: number): Promise<{ id: string; challenge: string }>
}

let users = 0

export async function createEnrollment(app: App): Promise<Enrollment> {
  const prisma = app.db.prisma
  const user = await upsertUser(prisma, { issuer: 'https://idp.example.test', subject: `scep-user-${process.pid}-${users++}` })
  const token = await mintAccessToken(prisma, { userId: user.id, teamId: app.defaultTeam.id, method: 'dev', windowSeconds: 3600 })
  return {
    userId: user.id,
    teamId: app.defaultTeam.id,
    accessTokenId: token.record.id,
    token: token.token,
    challenge: (expiresInMs = 600_000) =>
      createScepChallenge(prisma, { accessTokenId: token.record.id, userId: user.id, teamId: app.defaultTeam.id, expiresAt: new Date(Date.now() + expiresInMs) }),
  }
}

export interface KeyPair {
  publicKey: KeyObject
  privateKey: KeyObject
}

export function rsaKeys(bits = 2048): KeyPair {
  return generateKeyPairSync('rsa', { modulusLength: bits })
}

export interface RequestOptions {
  challenge?: string
  /** The key the CSR certifies; a fresh RSA-2048 key by default. */
  keys?: KeyPair
  /** Who signs the pkiMessage; a self-signed certificate of `keys` by default. */
  signer?: SignerIdentity
  cipher?: CipherName
  messageType?: MessageType
  /** The CSR's subject: requested, never used. */
  subject?: Buffer
  /** Replaces the CSR (hostile tests). */
  csr?: Buffer
}

export interface PreparedRequest {
  der: Buffer
  transactionId: string
  senderNonce: Buffer
  keys: KeyPair
  signer: SignerIdentity
}

export function scepRequest(app: App, options: RequestOptions = {}): PreparedRequest {
  const keys = options.keys ?? rsaKeys()
  const signer = options.signer ?? { certificate: selfSignedCertificate(keys), privateKey: keys.privateKey }
  const csr = options.csr ?? buildCsr({ keys, subject: options.subject ?? nameDer([['CN', 'requested-by-device']]), challengePassword: options.challenge })
  const built = buildPkiMessage({ messageType: options.messageType ?? MessageType.PKCSReq, content: csr, signer, recipient: app.keys.scepCa.certificate, cipher: options.cipher })
  return { ...built, keys, signer }
}

export async function postPkiOperation(app: App, der: Buffer, contentType = 'application/x-pki-message') {
  return app.inject({ method: 'POST', url: `${SCEP_PATH}?operation=PKIOperation`, headers: { 'content-type': contentType }, payload: der })
}

/** Reads a CertRep the server sent, checking it is signed by the app's CA. */
export function certRep(app: App, body: Buffer, signer: SignerIdentity): CertRepReply {
  return readCertRep(body, { ca: app.keys.scepCa.certificate, signer })
}

export function issuedCertificate(reply: CertRepReply): X509Certificate {
  if (reply.status !== 'SUCCESS' || reply.certificates.length !== 1) throw new Error(`expected one certificate, got ${reply.status} ${reply.failInfo ?? ''}`)
  return reply.certificates[0]!
}
