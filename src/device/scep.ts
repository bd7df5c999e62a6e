/**
 * The device's SCEP exchange with the profile's SCEP payload (PROTOCOL.md section 7), built on the
 * requester side of our codec (src/pki/scep/client.ts): GetCACaps, GetCACert (checked against the
 * profile's CAFingerprint, as a device checks it), then a PKCSReq with the profile's challenge from a
 * fresh RSA key of the profile's Keysize.
 */
import { createHash, generateKeyPair, X509Certificate } from 'node:crypto'
import { promisify } from 'node:util'
import { parseSignedData } from '../pki/cms.js'
import type { DistinguishedName, NameAttribute } from '../pki/names.js'
import { buildCsr, buildPkiMessage, nameDer, readCertRep, selfSignedCertificate, type KeyPairLike } from '../pki/scep/client.js'
import { MessageType } from '../pki/scep/types.js'
import type { PlistDict } from '../protocol/plist.js'
import { networkFacts, responseFacts, StepFailure } from './steps.js'
import { TransportError, type Transport } from './transport.js'

const generateKeyPairAsync = promisify(generateKeyPair)

export interface ScepIdentity {
  keys: KeyPairLike
  certificate: X509Certificate
  /** What happened, for the report. */
  notes: string[]
}

const NAME_OIDS: Record<string, NameAttribute> = { '2.5.4.3': 'CN', '2.5.4.10': 'O', '2.5.4.11': 'OU', '2.5.4.6': 'C', '0.9.2342.19200300.100.1.1': 'UID' }
const NAMES = new Set<string>(['CN', 'O', 'OU', 'C', 'UID'])

/** The profile's Subject (`[[["O", "..."]], [["CN", "..."]]]`) as a DER name; attributes we cannot write are left out. */
function subjectOf(subject: unknown): DistinguishedName {
  const out: [NameAttribute, string][] = []
  if (Array.isArray(subject)) {
    for (const rdn of subject) {
      if (!Array.isArray(rdn)) continue
      for (const pair of rdn) {
        if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') continue
        const name = NAMES.has(pair[0]) ? (pair[0] as NameAttribute) : NAME_OIDS[pair[0]]
        if (name) out.push([name, pair[1]])
      }
    }
  }
  return out.length ? out : [['CN', 'byod-mdm simulated device']]
}

export async function obtainIdentity(transport: Transport, payload: PlistDict, options: { userAgent: string; keys?: KeyPairLike }): Promise<ScepIdentity> {
  const url = String(payload.URL)
  const notes: string[] = []
  const get = async (operation: string) => {
    const target = `${url}${url.includes('?') ? '&' : '?'}operation=${operation}`
    try {
      return { target, res: await transport.request('GET', target, { headers: { 'user-agent': options.userAgent } }) }
    } catch (err) {
      if (err instanceof TransportError) throw new StepFailure('scep', networkFacts(err, `an answer to ${operation}`))
      throw err
    }
  }

  const caps = await get('GetCACaps')
  if (caps.res.status !== 200) throw new StepFailure('scep', responseFacts(caps.res, '200 to GetCACaps', caps.target))
  const capabilities = new Set(caps.res.body.toString('utf8').split(/\r?\n/).map((l) => l.trim()).filter(Boolean))
  const cipher = capabilities.has('AES') ? 'aes-128-cbc' : 'des-ede3-cbc'
  const digest = capabilities.has('SHA-256') ? 'sha256' : 'sha1'

  const caRes = await get('GetCACert')
  if (caRes.res.status !== 200) throw new StepFailure('scep', responseFacts(caRes.res, '200 with the CA certificate to GetCACert', caRes.target))
  let certificates: X509Certificate[]
  try {
    certificates = /ra-cert/.test(caRes.res.headers['content-type'] ?? '') ? parseSignedData(caRes.res.body).certificates : [new X509Certificate(caRes.res.body)]
  } catch (err) {
    throw new StepFailure('scep', { expected: 'a DER certificate or a degenerate PKCS#7 from GetCACert', got: `unreadable: ${(err as Error).message}`, url: caRes.target })
  }
  const pinned = payload.CAFingerprint instanceof Uint8Array ? Buffer.from(payload.CAFingerprint) : undefined
  const ca = pinned ? certificates.find((c) => fingerprintMatches(c, pinned)) : certificates[0]
  if (!ca) {
    throw new StepFailure('scep', {
      expected: `a CA certificate whose ${pinned!.length === 16 ? 'MD5' : 'SHA-1'} fingerprint is the profile's CAFingerprint ${pinned!.toString('hex')}`,
      got: `GetCACert served ${certificates.map((c) => c.fingerprint).join(', ')}`,
      url: caRes.target,
      fix: 'the profile pins another CA than the one SCEP serves: a device stops here. The SCEP CA changed after the profile was built (SCEP_CA_CERT), or two servers with different CAs answer behind one URL.',
    })
  }

  const keySize = typeof payload.Keysize === 'number' ? payload.Keysize : 2048
  const keys = options.keys ?? ((await generateKeyPairAsync('rsa', { modulusLength: keySize })) as KeyPairLike)
  const challenge = typeof payload.Challenge === 'string' ? payload.Challenge : undefined
  const csr = buildCsr({ keys, subject: nameDer(subjectOf(payload.Subject)), challengePassword: challenge, digest })
  const signer = { certificate: selfSignedCertificate(keys), privateKey: keys.privateKey }
  const message = buildPkiMessage({ messageType: MessageType.PKCSReq, content: csr, signer, recipient: ca, cipher, digest })

  const post = capabilities.has('POSTPKIOperation')
  const target = post ? `${url}${url.includes('?') ? '&' : '?'}operation=PKIOperation` : `${url}${url.includes('?') ? '&' : '?'}operation=PKIOperation&message=${encodeURIComponent(message.der.toString('base64'))}`
  let res
  try {
    res = post
      ? await transport.request('POST', target, { headers: { 'content-type': 'application/x-pki-message', 'user-agent': options.userAgent }, body: message.der })
      : await transport.request('GET', target, { headers: { 'user-agent': options.userAgent } })
  } catch (err) {
    if (err instanceof TransportError) throw new StepFailure('scep', networkFacts(err, 'a CertRep to PKIOperation'))
    throw err
  }
  if (res.status !== 200) throw new StepFailure('scep', responseFacts(res, '200 with a CertRep to PKIOperation', target))
  let reply
  try {
    reply = readCertRep(res.body, { ca, signer })
  } catch (err) {
    throw new StepFailure('scep', { expected: 'a CertRep signed by the CA', got: `unreadable: ${(err as Error).message}`, status: 200, url: target })
  }
  if (reply.transactionId !== message.transactionId || !reply.recipientNonce.equals(message.senderNonce)) {
    throw new StepFailure('scep', { expected: 'a CertRep with our transactionID and senderNonce', got: 'another transaction\'s reply', status: 200, url: target })
  }
  if (reply.status !== 'SUCCESS') {
    throw new StepFailure('scep', {
      expected: 'CertRep SUCCESS with the identity certificate',
      got: `CertRep ${reply.status}${reply.failInfo ? ` (failInfo ${reply.failInfo})` : ''}`,
      status: 200,
      errorCode: reply.failInfo,
      url: target,
      fix:
        reply.status === 'PENDING'
          ? 'the CA wants manual approval; devices enrolling through an account need it issued at once'
          : reply.failInfo === 'badRequest'
            ? "the CA refused the profile's challenge: it was used already (one certificate per profile), it expired, or the sign-in behind it was revoked. Enroll again for a new profile; the server's log has the reason."
            : 'the CA could not read the request: the server log has the reason',
    })
  }
  const certificate = reply.certificates[0]
  if (!certificate) throw new StepFailure('scep', { expected: 'one certificate in the CertRep', got: 'none', status: 200, url: target })
  if (!certificate.publicKey.export({ type: 'spki', format: 'der' }).equals(keys.publicKey.export({ type: 'spki', format: 'der' }))) {
    throw new StepFailure('scep', { expected: "a certificate for the device's key", got: 'a certificate for another key', status: 200, url: target })
  }
  notes.push(`CA ${firstLine(ca.subject)}; ${cipher}, ${digest}, ${post ? 'POST' : 'GET'}`)
  return { keys, certificate, notes }
}

function fingerprintMatches(cert: X509Certificate, pinned: Buffer): boolean {
  const algorithm = pinned.length === 16 ? 'md5' : pinned.length === 32 ? 'sha256' : 'sha1'
  return createHash(algorithm).update(cert.raw).digest().equals(pinned)
}

function firstLine(subject: string): string {
  return subject.split('\n').join(', ')
}
