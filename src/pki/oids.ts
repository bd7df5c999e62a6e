/** Object identifiers used by CMS (RFC 5652), SCEP (RFC 8894) and X.509 (RFC 5280). */
export const OID = {
  // CMS content types
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  envelopedData: '1.2.840.113549.1.7.3',
  // CMS attributes
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  challengePassword: '1.2.840.113549.1.9.7',
  extensionRequest: '1.2.840.113549.1.9.14',
  // SCEP attributes (RFC 8894 section 3.2.1)
  scepMessageType: '2.16.840.1.113733.1.9.2',
  scepPkiStatus: '2.16.840.1.113733.1.9.3',
  scepFailInfo: '2.16.840.1.113733.1.9.4',
  scepSenderNonce: '2.16.840.1.113733.1.9.5',
  scepRecipientNonce: '2.16.840.1.113733.1.9.6',
  scepTransactionId: '2.16.840.1.113733.1.9.7',
  // digests
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
  // signature algorithms
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha1WithRSAEncryption: '1.2.840.113549.1.1.5',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSHA1: '1.2.840.10045.4.1',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
  // ciphers
  desCBC: '1.3.14.3.2.7',
  desEDE3CBC: '1.2.840.113549.3.7',
  aes128CBC: '2.16.840.1.101.3.4.1.2',
  aes192CBC: '2.16.840.1.101.3.4.1.22',
  aes256CBC: '2.16.840.1.101.3.4.1.42',
  // X.509
  /** userId (RFC 4519 `UID`): in an MDM push certificate's subject, the APNs topic. */
  userId: '0.9.2342.19200300.100.1.1',
  extKeyUsage: '2.5.29.37',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const

export type DigestName = 'sha1' | 'sha256' | 'sha384' | 'sha512'

export const DIGEST_BY_OID: Record<string, DigestName> = {
  [OID.sha1]: 'sha1',
  [OID.sha256]: 'sha256',
  [OID.sha384]: 'sha384',
  [OID.sha512]: 'sha512',
}

export const DIGEST_OID: Record<DigestName, string> = {
  sha1: OID.sha1,
  sha256: OID.sha256,
  sha384: OID.sha384,
  sha512: OID.sha512,
}

/** Signature algorithms we verify: key type, and the digest when the OID names one. */
export const SIGNATURE_ALGORITHMS: Record<string, { key: 'rsa' | 'ec'; digest?: DigestName }> = {
  [OID.rsaEncryption]: { key: 'rsa' },
  [OID.sha1WithRSAEncryption]: { key: 'rsa', digest: 'sha1' },
  [OID.sha256WithRSAEncryption]: { key: 'rsa', digest: 'sha256' },
  [OID.sha384WithRSAEncryption]: { key: 'rsa', digest: 'sha384' },
  [OID.sha512WithRSAEncryption]: { key: 'rsa', digest: 'sha512' },
  [OID.ecdsaWithSHA1]: { key: 'ec', digest: 'sha1' },
  [OID.ecdsaWithSHA256]: { key: 'ec', digest: 'sha256' },
  [OID.ecdsaWithSHA384]: { key: 'ec', digest: 'sha384' },
  [OID.ecdsaWithSHA512]: { key: 'ec', digest: 'sha512' },
}
