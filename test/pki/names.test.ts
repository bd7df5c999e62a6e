import { describe, expect, it } from 'vitest'
import { formatName, nameDer } from '../../src/pki/names.js'
import { openssl } from '../helpers/openssl.js'

describe('nameDer', () => {
  it('writes one RDN per pair in the order given, PrintableString where the alphabet allows', () => {
    // The encoding the generated CAs had when subjects were parsed from RFC 4514 text by @peculiar/x509
    // (recorded before the switch): the same bytes, so the CA names of existing deployments still match.
    expect(nameDer([['CN', 'Example Corp Device CA'], ['O', 'Example Corp']]).toString('hex')).toBe(
      '3038311f301d060355040313164578616d706c6520436f72702044657669636520434131153013060355040a130c4578616d706c6520436f7270',
    )
    expect(nameDer([['CN', 'a, b'], ['O', 'c+d']]).toString('hex')).toBe('301d310d300b06035504031304612c2062310c300a060355040a1303632b64')
    // Outside PrintableString: UTF8String.
    expect(nameDer([['CN', 'a@b']]).toString('hex')).toBe('300e310c300a06035504030c03614062')
    expect(nameDer([['CN', 'é']]).toString('hex')).toBe('300d310b300906035504030c02c3a9')
  })

  it('is read back by openssl as the same name, including UID', () => {
    const o = openssl()
    try {
      const der = nameDer([['UID', 'com.apple.mgmt.External.1234'], ['CN', 'APSP:1234'], ['C', 'US']])
      const text = o.run(['asn1parse', '-inform', 'DER', '-in', o.file('name.der', der)]).toString()
      expect(text).toContain('userId')
      expect(text).toContain('com.apple.mgmt.External.1234')
      expect(text).toContain('commonName')
    } finally {
      o.close()
    }
  })

  it('formats names as escaped RFC 4514-style text', () => {
    expect(formatName([['CN', 'device'], ['O', 'Example, Inc.']])).toBe('CN=device, O=Example\\, Inc.')
  })
})
