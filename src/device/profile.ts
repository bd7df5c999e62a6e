/**
 * The enrollment profile as the device reads it: the CMS signature over it (src/pki/cms.ts, the same
 * code the server reads device signatures with), then the one profile checker (src/protocol/profile-rules.ts:
 * Apple's schema and PROTOCOL.md section 6) for this device's platform and the enrollment discovery
 * announced. A broken rule fails the step with the rule's own sentence; a warning becomes a note.
 */
import type { X509Certificate } from 'node:crypto'
import { CmsError, parseSignedData, verifySingleSigner } from '../pki/cms.js'
import { isDict, parsePlistDict, type PlistDict } from '../protocol/plist.js'
import type { Platform } from '../protocol/platform.js'
import { checkProfile, ENROLLMENT, type Enrollment } from '../protocol/profile-rules.js'
import { mismatchFix } from './discovery.js'
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

export interface ProfileReadOptions {
  platform: Platform
  /** What discovery announced (or what was asked for without discovery). */
  enrollment: Enrollment
  userIdentifier?: string
}

export function readEnrollmentProfile(body: Buffer, options: ProfileReadOptions): ReceivedProfile {
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
  const findings = checkProfile(dict, { platform: options.platform, enrollment: options.enrollment })
  const errors = findings.filter((f) => f.severity === 'error')
  if (errors.length) {
    throw new StepFailure('profile', {
      expected: `a profile a ${options.platform} device installs for ${ENROLLMENT[options.enrollment].name} (Apple's schema, PROTOCOL.md section 6)`,
      got: errors.map((e) => e.rule).join('; '),
      fix: modeFix(dict, options.enrollment, options.userIdentifier ?? 'the user') ?? 'fix the profile the server builds: the rule above is what a device checks',
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

/** The profile is for the other kind of enrollment: the team's setting, not the profile builder, is the cause. */
function modeFix(dict: PlistDict, enrollment: Enrollment, userIdentifier: string): string | undefined {
  const payloads = Array.isArray(dict.PayloadContent) ? dict.PayloadContent.filter(isDict) : []
  const mode = payloads.find((p) => p.PayloadType === 'com.apple.mdm')?.EnrollmentMode
  const other = enrollment === 'device' ? 'user' : 'device'
  if (mode !== ENROLLMENT[other].mode) return undefined
  return `the server built the profile for ${ENROLLMENT[other].name} (EnrollmentMode ${ENROLLMENT[other].mode}): ${mismatchFix(userIdentifier, enrollment, other)}`
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
