/**
 * The enrollment profile as the device reads it: the CMS signature over it (src/pki/cms.ts, the same
 * code the server reads device signatures with), then the rules of PROTOCOL.md section 6
 * (src/protocol/profile-rules.ts). A broken rule fails the step with the rule's own sentence.
 */
import type { X509Certificate } from 'node:crypto'
import { CmsError, parseSignedData, verifySingleSigner } from '../pki/cms.js'
import { isDict, parsePlistDict, type PlistDict } from '../protocol/plist.js'
import { checkEnrollmentProfile } from '../protocol/profile-rules.js'
import { StepFailure } from './steps.js'

export interface ReceivedProfile {
  dict: PlistDict
  mdm: PlistDict
  /** The SCEP payload's PayloadContent. */
  scep: PlistDict
  serverUrl: string
  checkInUrl: string
  topic: string
  assignedManagedAppleId: string
  signer?: X509Certificate
  notes: string[]
}

export function readEnrollmentProfile(body: Buffer, options: { version?: string; userIdentifier?: string } = {}): ReceivedProfile {
  const notes: string[] = []
  let content: Buffer = body
  let signer: X509Certificate | undefined
  if (body[0] === 0x30) {
    try {
      const verified = verifySingleSigner(parseSignedData(body))
      content = verified.content
      signer = verified.certificate
    } catch (err) {
      const why = err instanceof CmsError ? err.message : String(err)
      throw new StepFailure('profile', {
        expected: 'a profile whose CMS signature verifies',
        got: `a signature that does not: ${why}`,
        fix: 'a device refuses a profile whose signature does not verify: check PROFILE_SIGNING_CERT and PROFILE_SIGNING_KEY belong together',
      })
    }
    const now = Date.now()
    if (now > Date.parse(signer.validTo)) notes.push(`the profile signer's certificate expired on ${signer.validTo}: devices show the profile as not verified`)
    notes.push(isSelfSigned(signer) ? `signed by ${cn(signer)} (self-signed: a device shows "Not Verified"; a certificate from a public CA shows "Verified")` : `signed by ${cn(signer)}, issued by ${cn(signer, 'issuer')}`)
  } else {
    notes.push('the profile is not signed: a device shows it as "Unsigned"')
  }
  let dict: PlistDict
  try {
    dict = parsePlistDict(content)
  } catch (err) {
    throw new StepFailure('profile', { expected: 'an XML property list inside the signature', got: `unreadable: ${(err as Error).message}` })
  }
  const findings = checkEnrollmentProfile(dict, { version: options.version })
  const errors = findings.filter((f) => f.severity === 'error')
  if (errors.length) {
    throw new StepFailure('profile', {
      expected: 'a profile a device installs (PROTOCOL.md section 6)',
      got: errors.map((e) => e.rule).join('; '),
      fix: 'fix the profile the server builds: the rule above is what a device checks',
    })
  }
  for (const w of findings) notes.push(`warning: ${w.rule}`)
  const payloads = (dict.PayloadContent as PlistDict[]).filter(isDict)
  const mdm = payloads.find((p) => p.PayloadType === 'com.apple.mdm')!
  const identity = payloads.find((p) => p.PayloadUUID === mdm.IdentityCertificateUUID)!
  if (identity.PayloadType !== 'com.apple.security.scep') {
    throw new StepFailure('profile', { expected: 'a SCEP identity payload', got: `${String(identity.PayloadType)}: this simulator only speaks SCEP` })
  }
  const assigned = String(mdm.AssignedManagedAppleID ?? '')
  if (options.userIdentifier && assigned && assigned.toLowerCase() !== options.userIdentifier.toLowerCase()) {
    notes.push(`AssignedManagedAppleID is ${assigned}, not the ${options.userIdentifier} typed on the device: the user signs in to that Managed Apple Account next`)
  }
  return {
    dict,
    mdm,
    scep: identity.PayloadContent as PlistDict,
    serverUrl: String(mdm.ServerURL),
    checkInUrl: String(mdm.CheckInURL ?? mdm.ServerURL),
    topic: String(mdm.Topic),
    assignedManagedAppleId: assigned,
    signer,
    notes,
  }
}

function isSelfSigned(cert: X509Certificate): boolean {
  try {
    return cert.subject === cert.issuer && cert.verify(cert.publicKey)
  } catch {
    return false
  }
}

function cn(cert: X509Certificate, which: 'subject' | 'issuer' = 'subject'): string {
  const text = which === 'subject' ? cert.subject : cert.issuer
  return /(?:^|\n)CN=([^\n]*)/.exec(text)?.[1] ?? text.replace(/\n/g, ', ')
}
