/**
 * X.501 distinguished names (RFC 5280 section 4.1.2.4) as the server writes them: the one DER name
 * writer for certificates, CSRs and test identities, and the RFC 4514-style text stored beside them.
 * Names are given structured, as `[attribute, value]` pairs, one RDN each, in the order they appear in
 * the DER (the order RFC 4514 text reverses); nothing is parsed from text.
 */
import { der } from './der.js'
import { OID } from './oids.js'

export type NameAttribute = 'CN' | 'O' | 'OU' | 'C' | 'UID'
export type DistinguishedName = readonly (readonly [NameAttribute, string])[]

const ATTRIBUTE_OID: Record<NameAttribute, string> = {
  CN: OID.commonName,
  O: OID.organizationName,
  OU: OID.organizationalUnitName,
  C: OID.countryName,
  UID: OID.userId,
}

/** X.680 PrintableString's alphabet; other values are written as UTF8String (RFC 5280 section 4.1.2.6). */
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/

/** The DER Name: a SEQUENCE of single-valued RDNs in the order given. */
export function nameDer(name: DistinguishedName): Buffer {
  return der.sequence(
    ...name.map(([attribute, value]) => der.set(der.sequence(der.oid(ATTRIBUTE_OID[attribute]), PRINTABLE.test(value) ? der.printable(value) : der.utf8(value)))),
  )
}

/** `CN=..., O=...` for logs and the database: the pairs in the order given, values escaped (RFC 4514 section 2.4). */
export function formatName(name: DistinguishedName): string {
  return name.map(([attribute, value]) => `${attribute}=${escapeDnValue(value)}`).join(', ')
}

function escapeDnValue(value: string): string {
  return value
    .replace(/[\\,+"<>;=]/g, (c) => `\\${c}`)
    .replace(/^[ #]/, (c) => `\\${c}`)
    .replace(/ $/, '\\ ')
    .replace(/[\u0000-\u001f]/g, '')
}
