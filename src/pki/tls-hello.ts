/**
 * A TLS 1.2 ClientHello and the reading of the server's answer (RFC 5246 section 7.4.1), for one
 * question node:tls cannot answer: does the server negotiate the Extended Master Secret (RFC 7627)? A
 * server that does echoes the empty `extended_master_secret` extension (type 23) in its ServerHello.
 * Apple's TLS rules for device management ask for it on TLS 1.2 connections (support.apple.com/126655).
 *
 * Pure: bytes in, bytes or a parsed answer out. The hello offers exactly what Apple's rules allow on
 * TLS 1.2 (ECDHE with AES-GCM) and no supported_versions extension, so a server answers TLS 1.2 or
 * refuses with an alert.
 */
import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'

/** ECDHE with AES-GCM (RFC 5289): the TLS 1.2 suites Apple's rules accept that this check offers. */
export const ECDHE_AES_GCM_SUITES: ReadonlyMap<number, string> = new Map([
  [0xc02b, 'ECDHE-ECDSA-AES128-GCM-SHA256'],
  [0xc02c, 'ECDHE-ECDSA-AES256-GCM-SHA384'],
  [0xc02f, 'ECDHE-RSA-AES128-GCM-SHA256'],
  [0xc030, 'ECDHE-RSA-AES256-GCM-SHA384'],
])

export const EXTENSION = { serverName: 0, supportedGroups: 10, ecPointFormats: 11, signatureAlgorithms: 13, extendedMasterSecret: 23, renegotiationInfo: 0xff01 } as const

/** The TLS alert descriptions a refusing server is likely to send (RFC 8446 section 6). */
const ALERTS: Record<number, string> = { 40: 'handshake_failure', 47: 'illegal_parameter', 70: 'protocol_version', 71: 'insufficient_security', 80: 'internal_error', 112: 'unrecognized_name' }

export type ServerHelloAnswer =
  | { kind: 'hello'; version: number; cipherSuite: number; extensions: number[] }
  | { kind: 'alert'; level: number; description: number; name: string }

export class TlsHelloError extends Error {
  override name = 'TlsHelloError'
}

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff])
const u24 = (n: number) => Buffer.from([n >> 16, (n >> 8) & 0xff, n & 0xff])
const vec16 = (b: Buffer) => Buffer.concat([u16(b.length), b])
const extension = (type: number, data: Buffer) => Buffer.concat([u16(type), vec16(data)])

/** A ClientHello record for `serverName` (sent as SNI unless it is an IP address). */
export function clientHello(serverName: string): Buffer {
  const suites = Buffer.concat([...ECDHE_AES_GCM_SUITES.keys()].map(u16))
  const extensions = [
    ...(isIP(serverName) ? [] : [extension(EXTENSION.serverName, vec16(Buffer.concat([Buffer.from([0]), vec16(Buffer.from(serverName, 'ascii'))])))]),
    // x25519, secp256r1, secp384r1
    extension(EXTENSION.supportedGroups, vec16(Buffer.concat([0x001d, 0x0017, 0x0018].map(u16)))),
    extension(EXTENSION.ecPointFormats, Buffer.from([1, 0])),
    // ecdsa_secp256r1_sha256 .. rsa_pss_rsae_sha512, rsa_pkcs1_sha256 .. sha512
    extension(EXTENSION.signatureAlgorithms, vec16(Buffer.concat([0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601].map(u16)))),
    extension(EXTENSION.extendedMasterSecret, Buffer.alloc(0)),
    extension(EXTENSION.renegotiationInfo, Buffer.from([0])),
  ]
  const body = Buffer.concat([
    u16(0x0303),
    randomBytes(32),
    Buffer.from([0]), // no session id
    vec16(suites),
    Buffer.from([1, 0]), // null compression only
    vec16(Buffer.concat(extensions)),
  ])
  const handshake = Buffer.concat([Buffer.from([1]), u24(body.length), body])
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(handshake.length), handshake])
}

/**
 * Reads the first answer to `clientHello`: the ServerHello, or an alert. Undefined while `bytes` holds
 * too little; TlsHelloError when it is not TLS at all (a plain-HTTP port, say).
 */
export function readServerHello(bytes: Buffer): ServerHelloAnswer | undefined {
  const handshake: Buffer[] = []
  let offset = 0
  while (offset + 5 <= bytes.length) {
    const type = bytes[offset]!
    const length = bytes.readUInt16BE(offset + 3)
    if (bytes[offset + 1] !== 0x03) throw new TlsHelloError('the server did not answer with TLS')
    if (offset + 5 + length > bytes.length) break
    const fragment = bytes.subarray(offset + 5, offset + 5 + length)
    offset += 5 + length
    if (type === 0x15) {
      if (fragment.length < 2) throw new TlsHelloError('a truncated TLS alert')
      const description = fragment[1]!
      return { kind: 'alert', level: fragment[0]!, description, name: ALERTS[description] ?? `alert ${description}` }
    }
    if (type !== 0x16) throw new TlsHelloError(`an unexpected TLS record (content type ${type}) before the ServerHello`)
    handshake.push(fragment)
    const message = Buffer.concat(handshake)
    if (message.length < 4) continue
    if (message[0] !== 2) throw new TlsHelloError(`the server's first handshake message is type ${message[0]}, not a ServerHello`)
    const size = message.readUIntBE(1, 3)
    if (message.length < 4 + size) continue
    return parseServerHelloBody(message.subarray(4, 4 + size))
  }
  if (bytes.length >= 5 && bytes[0] !== 0x15 && bytes[0] !== 0x16) throw new TlsHelloError('the server did not answer with TLS')
  return undefined
}

function parseServerHelloBody(body: Buffer): ServerHelloAnswer {
  const fail = () => new TlsHelloError('a malformed ServerHello')
  if (body.length < 38) throw fail()
  const version = body.readUInt16BE(0)
  let at = 34
  const sessionIdLength = body[at]!
  at += 1 + sessionIdLength
  if (at + 3 > body.length) throw fail()
  const cipherSuite = body.readUInt16BE(at)
  at += 3 // suite and compression method
  const extensions: number[] = []
  if (at + 2 <= body.length) {
    const end = at + 2 + body.readUInt16BE(at)
    if (end > body.length) throw fail()
    at += 2
    while (at + 4 <= end) {
      extensions.push(body.readUInt16BE(at))
      at += 4 + body.readUInt16BE(at + 2)
    }
    if (at !== end) throw fail()
  }
  return { kind: 'hello', version, cipherSuite, extensions }
}
