/**
 * The TLS 1.2 ClientHello and ServerHello reader of the doctor's Extended Master Secret probe, against a
 * real TLS server (node:tls, which is OpenSSL) with and without the extension, and against hostile bytes.
 */
import net from 'node:net'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clientHello, ECDHE_AES_GCM_SUITES, EXTENSION, readServerHello, TlsHelloError, type ServerHelloAnswer } from '../../src/pki/tls-hello.js'
import { createTlsCertificate, SSL_OP_NO_EXTENDED_MASTER_SECRET, startHttpsServer, type Peer } from '../helpers/tls-peer.js'

const cert = createTlsCertificate({ names: ['tls.example.test'] })
const servers: Record<string, Peer> = {}

beforeAll(async () => {
  const answer = (_req: unknown, res: { end(): void }) => res.end()
  servers.ems = await startHttpsServer(cert, answer, { maxVersion: 'TLSv1.2' })
  servers.noEms = await startHttpsServer(cert, answer, { maxVersion: 'TLSv1.2', secureOptions: SSL_OP_NO_EXTENDED_MASTER_SECRET })
  servers.tls13 = await startHttpsServer(cert, answer, { minVersion: 'TLSv1.3' })
  servers.cbc = await startHttpsServer(cert, answer, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA256' })
})
afterAll(async () => Promise.all(Object.values(servers).map((s) => s.close())))

function hello(port: number): Promise<ServerHelloAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(clientHello('tls.example.test')))
    let bytes = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk])
      const answer = readServerHello(bytes)
      if (answer) {
        socket.destroy()
        resolve(answer)
      }
    })
    socket.on('error', reject)
  })
}

describe('against OpenSSL', () => {
  it('reads the extended_master_secret extension when the server agrees to it, and not otherwise', async () => {
    const withEms = await hello(servers.ems!.port)
    expect(withEms).toMatchObject({ kind: 'hello', version: 0x0303 })
    expect(withEms.kind === 'hello' && withEms.extensions).toContain(EXTENSION.extendedMasterSecret)
    expect(withEms.kind === 'hello' && ECDHE_AES_GCM_SUITES.has(withEms.cipherSuite)).toBe(true)
    const without = await hello(servers.noEms!.port)
    expect(without.kind === 'hello' && without.extensions).not.toContain(EXTENSION.extendedMasterSecret)
  })

  it('reads the alert of a TLS 1.3-only server and of one without ECDHE AES-GCM', async () => {
    expect(await hello(servers.tls13!.port)).toMatchObject({ kind: 'alert', name: 'protocol_version' })
    expect(await hello(servers.cbc!.port)).toMatchObject({ kind: 'alert', name: 'handshake_failure' })
  })
})

describe('hostile answers', () => {
  it('waits for more bytes, refuses what is not TLS, and never throws anything else', () => {
    const full = Buffer.from('160303002a020000260303' + '00'.repeat(32) + '00c02f00', 'hex')
    expect(readServerHello(full)).toEqual({ kind: 'hello', version: 0x0303, cipherSuite: 0xc02f, extensions: [] })
    expect(readServerHello(full.subarray(0, 20))).toBeUndefined()
    expect(() => readServerHello(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'))).toThrow(TlsHelloError)
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          readServerHello(Buffer.from(bytes))
        } catch (err) {
          if (!(err instanceof TlsHelloError)) throw err
        }
      }),
      { numRuns: 2000 },
    )
  })
})
