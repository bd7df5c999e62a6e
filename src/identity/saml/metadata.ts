/**
 * Reads what this server needs from an identity provider's SAML metadata (SAML 2.0 Metadata, OASIS
 * saml-metadata-2.0-os, section 2.4.3 IDPSSODescriptor): the entity id, the HTTP-Redirect
 * SingleSignOnService location, the signing certificates, and whether it wants signed AuthnRequests.
 * Pure: the caller reads the file.
 */
import { X509Certificate } from 'node:crypto'
import { attr, children, descendants, NS, parseStrictXml, SAML_METADATA_XML_LIMITS, textOf } from './xml.js'

export const HTTP_REDIRECT_BINDING = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect'

export interface IdpSettings {
  entityId: string
  /** Where AuthnRequests go (HTTP-Redirect binding). */
  ssoUrl: string
  /** PEM certificates whose keys may sign responses and assertions (several during a key rollover). */
  certificates: string[]
  /** The IdP's metadata says WantAuthnRequestsSigned="true". */
  wantAuthnRequestsSigned: boolean
}

export class MetadataError extends Error {
  override name = 'MetadataError'
}

export function parseIdpMetadata(xml: string): IdpSettings {
  let doc
  try {
    doc = parseStrictXml(xml, SAML_METADATA_XML_LIMITS)
  } catch (err) {
    throw new MetadataError(`is not readable SAML metadata: ${(err as Error).message}`)
  }
  const root = doc.documentElement!
  if (root.namespaceURI !== NS.metadata || !['EntityDescriptor', 'EntitiesDescriptor'].includes(root.localName!)) {
    throw new MetadataError('is not SAML metadata (expected an md:EntityDescriptor)')
  }
  // An aggregate (EntitiesDescriptor) is accepted when exactly one of its entities is an IdP.
  const entities = (root.localName === 'EntityDescriptor' ? [root] : descendants(root, NS.metadata, 'EntityDescriptor')).filter(
    (e) => children(e, NS.metadata, 'IDPSSODescriptor').length > 0,
  )
  if (entities.length !== 1) {
    throw new MetadataError(entities.length === 0 ? 'has no IDPSSODescriptor' : 'describes more than one identity provider')
  }
  const entity = entities[0]!
  const entityId = attr(entity, 'entityID')
  if (!entityId) throw new MetadataError('has no entityID')
  const idps = children(entity, NS.metadata, 'IDPSSODescriptor').filter((d) => (attr(d, 'protocolSupportEnumeration') ?? '').split(/\s+/).includes(NS.protocol))
  if (idps.length !== 1) throw new MetadataError('has no IDPSSODescriptor for SAML 2.0')
  const idp = idps[0]!

  const sso = children(idp, NS.metadata, 'SingleSignOnService').find((s) => attr(s, 'Binding') === HTTP_REDIRECT_BINDING)
  const ssoUrl = sso && attr(sso, 'Location')
  if (!ssoUrl || !/^https?:\/\//.test(ssoUrl)) throw new MetadataError('has no SingleSignOnService with the HTTP-Redirect binding')

  const certificates: string[] = []
  for (const kd of children(idp, NS.metadata, 'KeyDescriptor')) {
    const use = attr(kd, 'use')
    if (use !== undefined && use !== 'signing') continue
    for (const c of descendants(kd, NS.dsig, 'X509Certificate')) {
      certificates.push(certificatePem(textOf(c)))
    }
  }
  if (certificates.length === 0) throw new MetadataError('has no signing certificate (KeyDescriptor use="signing")')

  return { entityId, ssoUrl, certificates: [...new Set(certificates)], wantAuthnRequestsSigned: attr(idp, 'WantAuthnRequestsSigned') === 'true' }
}

/** Base64 DER (as in ds:X509Certificate) to PEM, checking that it is a certificate. */
export function certificatePem(base64: string): string {
  const b64 = base64.replace(/\s+/g, '')
  let cert: X509Certificate
  try {
    cert = new X509Certificate(Buffer.from(b64, 'base64'))
  } catch (err) {
    throw new MetadataError(`contains an unreadable certificate: ${(err as Error).message}`)
  }
  return cert.toString()
}
