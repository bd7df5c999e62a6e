/**
 * SCEP message vocabulary (RFC 8894 section 3.2.1). Values travel as PrintableString signed attributes,
 * so they are kept as the strings that appear on the wire.
 */

/** messageType, RFC 8894 section 3.2.1.2. */
export const MessageType = {
  CertRep: '3',
  RenewalReq: '17',
  PKCSReq: '19',
  CertPoll: '20',
  GetCert: '21',
  GetCRL: '22',
} as const
export type MessageType = (typeof MessageType)[keyof typeof MessageType]

/** pkiStatus, RFC 8894 section 3.2.1.3. */
export const PkiStatus = { SUCCESS: '0', FAILURE: '2', PENDING: '3' } as const
export type PkiStatus = (typeof PkiStatus)[keyof typeof PkiStatus]

/** failInfo, RFC 8894 section 3.2.1.4. */
export const FailInfo = { badAlg: '0', badMessageCheck: '1', badRequest: '2', badTime: '3', badCertId: '4' } as const
export type FailInfoName = keyof typeof FailInfo

/**
 * The outer message cannot be read or its signature does not hold: there is nothing trustworthy to
 * answer with a CertRep (no verified transactionID or senderNonce), so the transport answers 400.
 */
export class ScepMessageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ScepMessageError'
  }
}

/**
 * The signed message was valid but its content is not usable (envelope not for us, cannot be decrypted,
 * CSR malformed or not self-signed correctly, unsupported algorithm): answered as a CertRep FAILURE with
 * `failInfo`. The message stays in the log, never in the reply.
 */
export class ScepRequestError extends Error {
  constructor(
    readonly failInfo: FailInfoName,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'ScepRequestError'
  }
}
