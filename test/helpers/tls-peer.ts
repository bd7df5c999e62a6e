/**
 * Real TLS peers for tests: certificates with subjectAltNames and any validity (node-forge signs them;
 * node:crypto makes the key), an https server, and a TLS-terminating proxy in front of a plain-http
 * server (what nginx does in front of ours). Their TLS options are node:tls's, so a test can offer TLS 1.2
 * without the Extended Master Secret, CBC suites only, and so on.
 */
import { generateKeyPairSync } from 'node:crypto'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import forge from 'node-forge'

export interface TlsCertificate {
  certPem: string
  keyPem: string
}

export interface TlsCertificateOptions {
  /** DNS names for subjectAltName; the first is also the CN. */
  names: string[]
  notBefore?: Date
  notAfter?: Date
  bits?: number
}

const DAY = 86_400_000

/** A self-signed server certificate; a client trusts it by listing it in `ca`. */
export function createTlsCertificate(options: TlsCertificateOptions): TlsCertificate {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: options.bits ?? 2048 })
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString())
  cert.serialNumber = `01${forge.util.bytesToHex(forge.random.getBytesSync(8))}`
  cert.validity.notBefore = options.notBefore ?? new Date(Date.now() - DAY)
  cert.validity.notAfter = options.notAfter ?? new Date(Date.now() + 365 * DAY)
  const name = [{ name: 'commonName', value: options.names[0]! }]
  cert.setSubject(name)
  cert.setIssuer(name)
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: options.names.map((value) => ({ type: 2, value })) },
  ])
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create())
  return { certPem: forge.pki.certificateToPem(cert), keyPem }
}

export interface Peer {
  port: number
  close(): Promise<void>
}

/** `secureOptions` bit of OpenSSL 3's SSL_OP_NO_EXTENDED_MASTER_SECRET (node:crypto has no constant for it). */
export const SSL_OP_NO_EXTENDED_MASTER_SECRET = 0x1

export async function startHttpsServer(certificate: TlsCertificate, handler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void, tlsOptions: tls.TlsOptions = {}): Promise<Peer> {
  const server = https.createServer({ key: certificate.keyPem, cert: certificate.certPem, ...tlsOptions }, handler)
  return listen(server)
}

/** Terminates TLS and pipes the bytes to `target` (an http server on 127.0.0.1). */
export async function startTlsProxy(certificate: TlsCertificate, target: { port: number }, tlsOptions: tls.TlsOptions = {}): Promise<Peer> {
  const server = tls.createServer({ key: certificate.keyPem, cert: certificate.certPem, ...tlsOptions }, (client) => {
    const upstream = net.connect(target.port, '127.0.0.1')
    const drop = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream).pipe(client)
  })
  return listen(server)
}

async function listen(server: net.Server): Promise<Peer> {
  const sockets = new Set<net.Socket>()
  // A client that gives up mid-handshake (the doctor's TLS 1.2 probe) is not the test's concern.
  server.on('tlsClientError', () => {})
  server.on('connection', (s: net.Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}
