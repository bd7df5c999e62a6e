/**
 * The SCEP certificate authority (RFC 8894; PROTOCOL.md section 7). Issuance is a chain of small checks,
 * as in micromdm/scep: decode -> message type -> envelope and CSR -> key policy -> challenge (PKCSReq) or
 * previous certificate (RenewalReq) -> issue -> store. A refusal by any check is a signed CertRep FAILURE
 * the client can read; only a message that cannot be trusted at all (no verified transactionID or
 * nonce to answer) is an HTTP 400, thrown as BadRequestError.
 */
import { randomUUID, type KeyObject } from 'node:crypto'
import type { Config } from '../config/index.js'
import { BadRequestError } from '../errors.js'
import {
  buildCertRep,
  CIPHERS,
  decodePkiMessage,
  degenerateCertificates,
  MessageType,
  openCertificationRequest,
  ScepMessageError,
  ScepRequestError,
  type ContentCipher,
  type FailInfoName,
  type OpenedRequest,
  type PkiMessage,
} from '../pki/scep/index.js'
import { formatName, type DistinguishedName } from '../pki/names.js'
import { CertificateSigner, randomSerialHex } from '../pki/x509.js'
import type { Db } from '../storage/database.js'
import { countRenewalsSince, enrollmentForCertificate } from '../storage/enrollments.js'
import { findScepChallenge, storeRenewal, storeWithChallenge } from '../storage/scep.js'
import { findAccessTokenWithUser } from '../storage/users.js'
import { certificateFingerprint, findDeviceCertificate, storedCertificateRefusal, type NewDeviceCertificate } from './device-certificates.js'
import type { ServerKeys } from './keys.js'
import { hashSecret, MAX_SECRET_LENGTH } from '../pki/secrets.js'

/**
 * GetCACaps (RFC 8894 section 3.5.2). SHA-1 is not offered: clients that cannot do better still get
 * their SHA-1-signed requests verified (micromdm's scepclient signs with SHA-1 whatever it is told), but
 * nobody is invited to use it. DES3 stays for clients without AES. No GetNextCACert: the CA does not roll
 * over by itself.
 */
export const SCEP_CAPABILITIES = ['POSTPKIOperation', 'SHA-256', 'SHA-512', 'AES', 'DES3', 'SCEPStandard', 'Renewal'] as const

/** RenewalReqs answered per enrollment per 24 hours (a device renews once before each expiry). */
export const MAX_RENEWALS_PER_DAY = 5

/** Certificates start a little in the past so a device whose clock lags accepts them at once. */
const BACKDATE_MS = 10 * 60_000

export interface ScepServiceDeps {
  db: Db
  config: Config
  keys: ServerKeys
}

export interface ScepOutcome {
  messageType: string
  transactionId: string
  status: 'SUCCESS' | 'FAILURE'
  failInfo?: FailInfoName
  /** Why a request was refused: for the log only, never in the reply. */
  reason?: string
  certificateId?: string
}

export interface PkiOperationResult {
  /** The CertRep, DER (application/x-pki-message). */
  body: Buffer
  outcome: ScepOutcome
}

type Decision = { refused: true; failInfo: FailInfoName; reason: string } | { refused: false; body: Buffer; certificateId: string }

const refuse = (failInfo: FailInfoName, reason: string): Decision => ({ refused: true, failInfo, reason })

export class ScepService {
  private signer?: Promise<CertificateSigner>

  constructor(private readonly deps: ScepServiceDeps) {}

  capabilities(): string {
    return `${SCEP_CAPABILITIES.join('\n')}\n`
  }

  /** GetCACert (RFC 8894 section 4.2): the CA alone as DER, or with its chain as a degenerate SignedData. */
  caCertificate(): { contentType: string; body: Buffer } {
    const ca = this.deps.keys.scepCa
    if (ca.chain.length === 0) return { contentType: 'application/x-x509-ca-cert', body: ca.certificate.raw }
    return { contentType: 'application/x-x509-ca-ra-cert', body: degenerateCertificates([ca.certificate, ...ca.chain].map((c) => c.raw)) }
  }

  /** PKIOperation: a CertRep for any message that decodes; BadRequestError for one that does not. */
  async pkiOperation(input: Uint8Array, now = new Date()): Promise<PkiOperationResult> {
    let request: PkiMessage
    try {
      request = decodePkiMessage(input)
    } catch (err) {
      if (err instanceof ScepMessageError) throw new BadRequestError(`undecodable SCEP message: ${err.message}`, { code: 'bad_scep_message', cause: err })
      throw err
    }
    const decision = await this.decide(request, now)
    const outcome: ScepOutcome = { messageType: request.messageType, transactionId: request.transactionId, status: decision.refused ? 'FAILURE' : 'SUCCESS' }
    if (decision.refused) {
      return {
        body: await buildCertRep(this.deps.keys.scepCa, request, { status: 'FAILURE', failInfo: decision.failInfo }),
        outcome: { ...outcome, failInfo: decision.failInfo, reason: decision.reason },
      }
    }
    return { body: decision.body, outcome: { ...outcome, certificateId: decision.certificateId } }
  }

  private async decide(request: PkiMessage, now: Date): Promise<Decision> {
    if (request.messageType !== MessageType.PKCSReq && request.messageType !== MessageType.RenewalReq) {
      return refuse('badRequest', `messageType ${request.messageType} is not supported`)
    }
    // The reply is enveloped to the signer's certificate with RSA key transport (checked before anything
    // is consumed or issued).
    if (request.signerCertificate.publicKey.asymmetricKeyType !== 'rsa') {
      return refuse('badAlg', `the signer certificate has a ${request.signerCertificate.publicKey.asymmetricKeyType} key; the reply needs RSA`)
    }
    let opened: OpenedRequest
    try {
      opened = openCertificationRequest(request, this.deps.keys.scepCa)
    } catch (err) {
      if (err instanceof ScepRequestError) return refuse(err.failInfo, err.message)
      throw err
    }
    // Before the challenge, so a device that sent a weak key keeps its challenge for a retry.
    const weak = keyPolicyRefusal(opened.csr.publicKey)
    if (weak) return refuse('badRequest', weak)
    return request.messageType === MessageType.PKCSReq ? this.enroll(request, opened, now) : this.renew(request, opened, now)
  }

  /**
   * PKCSReq: everything that can fail without the database happens first (issue, build the CertRep);
   * then one statement consumes the challenge and stores the certificate atomically. A failure before
   * or in it leaves the challenge for the device's retry; concurrent requests with one challenge get at
   * most one certificate. The price: a request with a wrong challenge costs two RSA signatures that are
   * thrown away, on top of the RSA decryption it already cost.
   */
  private async enroll(request: PkiMessage, opened: OpenedRequest, now: Date): Promise<Decision> {
    const password = opened.csr.challengePassword
    if (!password) return refuse('badRequest', 'PKCSReq without a challengePassword')
    if (password.length > MAX_SECRET_LENGTH) return refuse('badRequest', 'unknown challenge')
    const challengeHash = hashSecret(password)
    const prepared = await this.prepare(request, opened, now)
    if (await storeWithChallenge(this.deps.db, challengeHash, now, prepared.certificate)) {
      return { refused: false, body: prepared.body, certificateId: prepared.certificate.id }
    }
    return refuse('badRequest', await this.explainChallenge(challengeHash, now))
  }

  /** RenewalReq: signed by an unexpired, unrevoked certificate this CA issued; same enrollment, no challenge. */
  private async renew(request: PkiMessage, opened: OpenedRequest, now: Date): Promise<Decision> {
    const db = this.deps.db
    const previous = await findDeviceCertificate(db, certificateFingerprint(request.signerCertificate.raw))
    if (!previous) return refuse('badRequest', 'RenewalReq signed by a certificate this CA did not issue')
    const unusable = storedCertificateRefusal(previous, now)
    if (unusable) return refuse('badRequest', `RenewalReq signed by a ${unusable.replace(/_/g, ' ')} certificate`)
    const token = await findAccessTokenWithUser(db, previous.accessTokenId)
    const inactive = token ? enrollmentRefusal(token) : 'the enrollment no longer exists'
    if (inactive) return refuse('badRequest', inactive)
    // A renewal continues the lineage of a certificate bound to an enrollment: one sign-in cannot become
    // several enrollments by renewing its first certificate before it ever authenticated (SECURITY.md
    // row 26). Renewals of one enrollment are counted per day: a device renews before each expiry, and
    // retries only when a reply was lost.
    const enrollment = await enrollmentForCertificate(db, previous)
    if (!enrollment) return refuse('badRequest', 'RenewalReq signed by a certificate that has not authenticated an enrollment')
    if (enrollment.status === 'checked_out' || enrollment.status === 'removed') return refuse('badRequest', `RenewalReq for ${enrollment.status.replace('_', ' ')} enrollment ${enrollment.id}`)
    const recent = await countRenewalsSince(db, enrollment.id, new Date(now.getTime() - 86400_000))
    if (recent >= MAX_RENEWALS_PER_DAY) return refuse('badRequest', `enrollment ${enrollment.id} had ${recent} renewals in the last 24 hours`)
    const { certificate, body } = await this.prepare(request, opened, now)
    await storeRenewal(db, previous, certificate)
    return { refused: false, body, certificateId: certificate.id }
  }

  /**
   * Issues from the server's template (nothing from the CSR but its key) and builds the SUCCESS CertRep.
   * Stores nothing.
   */
  private async prepare(request: PkiMessage, opened: OpenedRequest, now: Date): Promise<{ certificate: NewDeviceCertificate; body: Buffer }> {
    const ca = this.deps.keys.scepCa
    const id = randomUUID()
    const subject: DistinguishedName = [['CN', id], ['O', this.deps.config.orgName]]
    const serial = randomSerialHex()
    const validityMs = this.deps.config.scepCertValidityDays * 86400_000
    // Certificates carry whole seconds; store exactly what the certificate says.
    const notBefore = wholeSeconds(now.getTime() - BACKDATE_MS)
    const notAfter = wholeSeconds(Math.min(now.getTime() + validityMs, new Date(ca.certificate.validTo).getTime()))
    const der = await (await this.certificateSigner()).issueDer({
      subject,
      publicKey: opened.csr.publicKey,
      spkiDer: opened.csr.spkiDer,
      notBefore,
      notAfter,
      serialHex: serial,
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      extendedKeyUsage: ['clientAuth'],
    })
    const body = await buildCertRep(ca, request, { status: 'SUCCESS', certificateDer: der, recipient: request.signerCertificate, cipher: replyCipher(opened.cipher) })
    return { certificate: { id, serial, fingerprintSha256: certificateFingerprint(der), subject: formatName(subject), notBefore, notAfter, der }, body }
  }

  /** Why a challenge was not taken, for the log. */
  private async explainChallenge(challengeHash: Uint8Array<ArrayBuffer>, now: Date): Promise<string> {
    const challenge = await findScepChallenge(this.deps.db, challengeHash)
    if (!challenge) return 'unknown challenge'
    const inactive = enrollmentRefusal(challenge.accessToken)
    if (inactive) return inactive
    if (challenge.expiresAt.getTime() <= now.getTime()) return 'challenge expired'
    return 'challenge already used'
  }

  private certificateSigner(): Promise<CertificateSigner> {
    this.signer ??= CertificateSigner.create(this.deps.keys.scepCa)
    return this.signer
  }
}

/** RSA of 2048 bits or more, or EC P-256: what Apple devices generate and what check-in will accept. */
export function keyPolicyRefusal(key: KeyObject): string | null {
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
    return bits >= 2048 ? null : `RSA key of ${bits} bits; at least 2048 are required`
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve
    return curve === 'prime256v1' ? null : `EC key on ${curve}; only P-256 is accepted`
  }
  return `${key.asymmetricKeyType} keys are not accepted`
}

/**
 * The reply is encrypted with the cipher the requester used, which it can certainly read; single DES
 * (56-bit) is raised to DES3, which every SCEP client supports (RFC 8894 section 3.5.2).
 */
function replyCipher(requested: ContentCipher): ContentCipher {
  return requested.name === 'des-cbc' ? CIPHERS['des-ede3-cbc'] : requested
}

function wholeSeconds(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000)
}

function enrollmentRefusal(token: { revokedAt: Date | null; user: { active: boolean } }): string | null {
  if (token.revokedAt) return 'the access token of this enrollment is revoked'
  if (!token.user.active) return 'the user of this enrollment is deactivated'
  return null
}
