/**
 * Pure checks on a SAML Response (SAML 2.0 Core, OASIS saml-core-2.0-os, section 3.2.2; Web Browser SSO
 * profile, saml-profiles-2.0-os, section 4.1.4.3), on top of the signature and condition checks that
 * @node-saml/node-saml performs.
 *
 * `inspectResponse` runs first, on the raw (untrusted) document: it refuses what no honest IdP sends
 * (markup declarations, comments, several or encrypted assertions, IdP-initiated responses) and reads
 * the envelope fields node-saml ignores (Status, Destination). `readSignedAssertion` runs on the
 * assertion XML that node-saml returns after verifying its signature: only that content is trusted for
 * Issuer, ID and the bearer SubjectConfirmation (Recipient, InResponseTo).
 */
import { attr, children, descendants, NS, onlyChild, parseStrictXml, textOf } from './xml.js'

/** A refused response; `reason` is for the log. */
export class ResponseRefused extends Error {
  override name = 'ResponseRefused'
  constructor(
    readonly kind: 'invalid' | 'unsolicited' | 'idp_status',
    reason: string,
  ) {
    super(reason)
  }
}

export const STATUS_SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success'
const BEARER = 'urn:oasis:names:tc:SAML:2.0:cm:bearer'

/** Base64 of a SAMLResponse larger than this is refused before decoding. */
export const MAX_SAML_RESPONSE_LENGTH = 256 * 1024

export interface ResponseEnvelope {
  inResponseTo: string
  destination?: string
  issuer?: string
}

export function inspectResponse(samlResponse: string): ResponseEnvelope {
  if (samlResponse.length > MAX_SAML_RESPONSE_LENGTH) throw new ResponseRefused('invalid', 'SAMLResponse is too large')
  const compact = samlResponse.replace(/\s+/g, '')
  if (!compact || !/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) throw new ResponseRefused('invalid', 'SAMLResponse is not base64')
  let xml: string
  try {
    xml = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(compact, 'base64'))
  } catch {
    throw new ResponseRefused('invalid', 'SAMLResponse is not UTF-8')
  }
  let doc
  try {
    doc = parseStrictXml(xml)
  } catch (err) {
    throw new ResponseRefused('invalid', `SAMLResponse: ${(err as Error).message}`)
  }
  const root = doc.documentElement!
  if (root.namespaceURI !== NS.protocol || root.localName !== 'Response') throw new ResponseRefused('invalid', 'SAMLResponse is not a samlp:Response')

  // One assertion, directly under the Response and nowhere else: a second one anywhere (inside
  // Extensions, Advice, another assertion...) is the shape of signature-wrapping attacks.
  const all = descendants(doc, NS.assertion, 'Assertion')
  if (all.length !== 1 || children(root, NS.assertion, 'Assertion').length !== 1) {
    throw new ResponseRefused('invalid', `expected exactly one Assertion directly in the Response, found ${all.length}`)
  }
  if (descendants(doc, NS.assertion, 'EncryptedAssertion').length > 0) throw new ResponseRefused('invalid', 'encrypted assertions are not supported')

  const status = onlyChild(root, NS.protocol, 'Status')
  const code = status && onlyChild(status, NS.protocol, 'StatusCode')
  const statusValue = code && attr(code, 'Value')
  if (statusValue !== STATUS_SUCCESS) {
    const sub = code && onlyChild(code, NS.protocol, 'StatusCode')
    throw new ResponseRefused('idp_status', `the IdP answered with status ${statusValue ?? '(none)'}${sub ? ` / ${attr(sub, 'Value')}` : ''}`)
  }

  const inResponseTo = attr(root, 'InResponseTo')
  if (!inResponseTo) throw new ResponseRefused('unsolicited', 'the Response has no InResponseTo: IdP-initiated sign-in is not accepted')
  const issuerEl = onlyChild(root, NS.assertion, 'Issuer')
  return { inResponseTo, destination: attr(root, 'Destination'), issuer: issuerEl ? textOf(issuerEl).trim() : undefined }
}

export interface SubjectConfirmation {
  method?: string
  recipient?: string
  inResponseTo?: string
  notOnOrAfter?: Date
}

export interface SignedAssertion {
  id: string
  issuer: string
  confirmations: SubjectConfirmation[]
  /** Latest NotOnOrAfter in the assertion (Conditions or SubjectConfirmationData): remember its ID until then. */
  expiresAt?: Date
}

export function readSignedAssertion(xml: string): SignedAssertion {
  const doc = parseStrictXml(xml)
  const a = doc.documentElement!
  if (a.namespaceURI !== NS.assertion || a.localName !== 'Assertion') throw new ResponseRefused('invalid', 'the signed content is not an Assertion')
  const id = attr(a, 'ID')
  if (!id) throw new ResponseRefused('invalid', 'the Assertion has no ID')
  const issuerEl = onlyChild(a, NS.assertion, 'Issuer')
  if (!issuerEl) throw new ResponseRefused('invalid', 'the Assertion has no Issuer')
  const subject = onlyChild(a, NS.assertion, 'Subject')
  const confirmations: SubjectConfirmation[] = []
  for (const sc of subject ? children(subject, NS.assertion, 'SubjectConfirmation') : []) {
    const data = onlyChild(sc, NS.assertion, 'SubjectConfirmationData')
    confirmations.push({
      method: attr(sc, 'Method'),
      recipient: data && attr(data, 'Recipient'),
      inResponseTo: data && attr(data, 'InResponseTo'),
      notOnOrAfter: data ? date(attr(data, 'NotOnOrAfter')) : undefined,
    })
  }
  const conditions = onlyChild(a, NS.assertion, 'Conditions')
  const times = [conditions && date(attr(conditions, 'NotOnOrAfter')), ...confirmations.map((c) => c.notOnOrAfter)].filter((d): d is Date => d !== undefined)
  return {
    id,
    issuer: textOf(issuerEl).trim(),
    confirmations,
    expiresAt: times.length ? new Date(Math.max(...times.map((t) => t.getTime()))) : undefined,
  }
}

/**
 * The bearer confirmation that binds the assertion to this request and this endpoint (profiles
 * 4.1.4.2-4.1.4.3): Recipient is our assertion consumer URL and InResponseTo our AuthnRequest ID.
 */
export function checkBearerConfirmation(assertion: SignedAssertion, expected: { recipient: string; inResponseTo: string }): void {
  const bearer = assertion.confirmations.filter((c) => c.method === BEARER)
  if (bearer.length === 0) throw new ResponseRefused('invalid', 'the Assertion has no bearer SubjectConfirmation')
  const match = bearer.find((c) => c.recipient === expected.recipient && c.inResponseTo === expected.inResponseTo && c.notOnOrAfter)
  if (!match) {
    const seen = bearer.map((c) => `Recipient=${c.recipient ?? '(none)'} InResponseTo=${c.inResponseTo ?? '(none)'}`).join('; ')
    throw new ResponseRefused('invalid', `no bearer SubjectConfirmation for Recipient=${expected.recipient} and this request (${seen})`)
  }
}

function date(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined
  const d = new Date(value)
  if (Number.isNaN(d.getTime())) throw new ResponseRefused('invalid', `malformed date ${value}`)
  return d
}
