/**
 * CertRep (RFC 8894 section 3.3.2): the CA's answer, a SignedData signed by the CA with the SCEP
 * attributes. SUCCESS carries an EnvelopedData, encrypted to the requester's signing certificate, with a
 * degenerate certificates-only SignedData holding the issued certificate (section 3.4). FAILURE carries a
 * failInfo and no envelope.
 */
import { randomBytes } from 'node:crypto'
import { signCmsAsync } from '../cms.js'
import { der } from '../der.js'
import type { Identity } from '../x509.js'
import { OID } from '../oids.js'
import type { ContentCipher } from './ciphers.js'
import { sealEnvelope, type RecipientCertificate } from './envelope.js'
import { FailInfo, MessageType, PkiStatus, type FailInfoName } from './types.js'

/** What a CertRep answers: the request's transactionID and senderNonce. */
export interface CertRepTarget {
  transactionId: string
  senderNonce: Uint8Array
}

export type CertRepResult =
  | { status: 'SUCCESS'; certificateDer: Uint8Array; recipient: RecipientCertificate; cipher: ContentCipher }
  | { status: 'FAILURE'; failInfo: FailInfoName }

export async function buildCertRep(ca: Identity, request: CertRepTarget, result: CertRepResult): Promise<Buffer> {
  const attrs: { oid: string; values: Uint8Array[] }[] = [
    { oid: OID.scepMessageType, values: [der.printable(MessageType.CertRep)] },
    { oid: OID.scepTransactionId, values: [der.printable(request.transactionId)] },
    { oid: OID.scepRecipientNonce, values: [der.octetString(request.senderNonce)] },
    { oid: OID.scepSenderNonce, values: [der.octetString(randomBytes(16))] },
  ]
  let content: Buffer
  if (result.status === 'SUCCESS') {
    attrs.push({ oid: OID.scepPkiStatus, values: [der.printable(PkiStatus.SUCCESS)] })
    content = sealEnvelope(degenerateCertificates([result.certificateDer]), result.recipient, result.cipher)
  } else {
    attrs.push({ oid: OID.scepPkiStatus, values: [der.printable(PkiStatus.FAILURE)] })
    attrs.push({ oid: OID.scepFailInfo, values: [der.printable(FailInfo[result.failInfo])] })
    // An empty id-data content, as micromdm's server sends: clients expect eContent to be present.
    content = Buffer.alloc(0)
  }
  return signCmsAsync({ content, certificate: ca.certificate, privateKey: ca.privateKey, extraCertificates: ca.chain, digest: 'sha256', signedAttributes: attrs })
}

/** A certificates-only SignedData ("degenerate", RFC 8894 section 3.4) from certificate DERs. */
export function degenerateCertificates(certificates: Uint8Array[]): Buffer {
  const signedData = der.sequence(
    der.integer(1),
    der.set(),
    der.sequence(der.oid(OID.data)),
    der.implicit(0, true, Buffer.concat(certificates)),
    der.set(),
  )
  return der.sequence(der.oid(OID.signedData), der.explicit(0, signedData))
}
