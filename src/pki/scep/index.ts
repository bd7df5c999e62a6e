/** SCEP codec (RFC 8894): pure functions over bytes, no HTTP, no storage. */
export * from './types.js'
export { CIPHERS, cipherByOid, type CipherName, type ContentCipher } from './ciphers.js'
export { decodePkiMessage, openCertificationRequest, type OpenedRequest, type PkiMessage, type SignerCertificate } from './message.js'
export { buildCertRep, degenerateCertificates, type CertRepResult, type CertRepTarget } from './certrep.js'
export type { CertificationRequest } from './csr.js'
