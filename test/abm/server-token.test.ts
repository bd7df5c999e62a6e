/**
 * Reading the `.p7m` server token: made by the fake ABM with node-forge and with `openssl smime -encrypt`
 * (independent implementations of S/MIME EnvelopedData), decrypted with the repository's envelope code.
 */
import { beforeAll, afterAll, describe, expect, it } from 'vitest'
import { envelopeDer, parseTokenJson, readServerToken, ServerTokenError } from '../../src/abm/server-token.js'
import { createSelfSigned, generateRsaKeyPair, type Identity } from '../../src/pki/x509.js'
import { startFakeAbm, type FakeAbm } from '../helpers/fake-abm.js'

async function identity(cn: string): Promise<Identity> {
  const keys = await generateRsaKeyPair(2048)
  const certificate = await createSelfSigned({ subject: [['CN', cn]], keys, notBefore: new Date(Date.now() - 3600_000), notAfter: new Date(Date.now() + 86_400_000), keyUsage: ['digitalSignature', 'keyEncipherment'] })
  return { certificate, privateKey: keys.privateKey, chain: [] }
}

let fake: FakeAbm
let ours: Identity
let other: Identity

beforeAll(async () => {
  fake = await startFakeAbm()
  ;[ours, other] = await Promise.all([identity('ours'), identity('another server')])
  fake.uploadCertificate(ours.certificate.toString())
})
afterAll(() => fake.close())

describe('the ABM server token file', () => {
  it('decrypts the S/MIME file ABM downloads (node-forge, AES-128-CBC) into the four credentials and the expiry', () => {
    const file = fake.serverTokenFile()
    expect(file).toMatch(/^Content-Type: application\/pkcs7-mime; name="smime.p7m"; smime-type=enveloped-data\n/)
    const token = readServerToken(file, ours)
    expect(token).toEqual({
      consumerKey: fake.token.consumer_key,
      consumerSecret: fake.token.consumer_secret,
      accessToken: fake.token.access_token,
      accessSecret: fake.token.access_secret,
      expiresAt: new Date(fake.token.access_token_expiry),
    })
  })

  it('decrypts what openssl smime -encrypt makes, as a string or as bytes', () => {
    const file = fake.serverTokenFile({ openssl: true })
    expect(file).toMatch(/Content-Type: application\/(x-)?pkcs7-mime/)
    expect(readServerToken(file, ours).accessToken).toBe(fake.token.access_token)
    expect(readServerToken(Buffer.from(file, 'latin1'), ours).consumerKey).toBe(fake.token.consumer_key)
    // The bare DER of the envelope as well.
    expect(readServerToken(envelopeDer(file), ours).accessSecret).toBe(fake.token.access_secret)
  })

  it('refuses a token encrypted to another certificate, saying what to do', () => {
    const file = fake.serverTokenFile({ certificatePem: other.certificate.toString() })
    let error: unknown
    try {
      readServerToken(file, ours)
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(ServerTokenError)
    expect((error as ServerTokenError).code).toBe('token_not_for_this_server')
    expect((error as Error).message).toMatch(/encrypted to another certificate.*GET \/api\/v1\/admin\/abm\/certificate/)
  })

  it('refuses files that are not server tokens', () => {
    expect(() => readServerToken('', ours)).toThrow(/empty/)
    expect(() => readServerToken('Content-Type: text/html\n\n<html></html>', ours)).toThrow(/not an S\/MIME message/)
    expect(() => readServerToken('hello, world', ours)).toThrow(/neither an S\/MIME message nor Base64/)
    expect(() => readServerToken('MIIBAAAA', ours)).toThrow(ServerTokenError)
    expect(() => readServerToken('x'.repeat(70_000), ours)).toThrow(/larger than/)
  })

  it('reads the decrypted content with or without MIME headers and BEGIN/END MESSAGE, wrapped or not', () => {
    const json = '{"consumer_key":"CK_1","consumer_secret":"CS_2","access_token":"AT_3","access_secret":"AS_4","access_token_expiry":"2027-01-14T21:27:41Z"}'
    const expected = { consumerKey: 'CK_1', consumerSecret: 'CS_2', accessToken: 'AT_3', accessSecret: 'AS_4', expiresAt: new Date('2027-01-14T21:27:41Z') }
    expect(parseTokenJson(json)).toEqual(expected)
    expect(parseTokenJson(`Content-Type: text/plain;charset=UTF-8\nContent-Transfer-Encoding: 7bit\n\n${json}`)).toEqual(expected)
    expect(parseTokenJson(`Content-Type: text/plain\r\n\r\n-----BEGIN MESSAGE-----\r\n${json}\r\n-----END MESSAGE-----\r\n`)).toEqual(expected)
    // Apple's "Examining server tokens" shows the JSON wrapped at 78 columns.
    expect(parseTokenJson(`-----BEGIN MESSAGE-----\n${json.slice(0, 40)}\n${json.slice(40, 100)}\n${json.slice(100)}\n-----END MESSAGE-----`)).toEqual(expected)
    expect(() => parseTokenJson('{"consumer_key":"CK_1"}')).toThrow(/no valid consumer_secret/)
    expect(() => parseTokenJson(json.replace('2027-01-14T21:27:41Z', 'soon'))).toThrow(/not a date/)
    expect(() => parseTokenJson('not json')).toThrow(/no JSON object/)
  })
})
