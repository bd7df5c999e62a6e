/**
 * Does a host's TLS meet Apple's rules for device management (support.apple.com/126655, enforced from a
 * coming OS release; README "Deploying behind a TLS reverse proxy")? TLS 1.2 or newer; on TLS 1.2 an
 * ECDHE suite with AES-GCM and the Extended Master Secret (RFC 7627); a certificate devices trust, with an
 * RSA key of 2048 bits or more (EC: 256). A device that refuses the handshake shows "Your Apple Account
 * does not support the expected services" and the server never sees a request, so this is worth knowing
 * before a user finds it.
 *
 * Two connections: node:tls offering only what the rules allow (it must succeed, and says what was
 * negotiated and which certificate came), then a hand-written TLS 1.2 ClientHello (pki/tls-hello.ts) whose
 * ServerHello says whether the server agrees to the Extended Master Secret, which node:tls does not expose.
 */
import net from 'node:net'
import tls from 'node:tls'
import { clientHello, ECDHE_AES_GCM_SUITES, EXTENSION, readServerHello, TlsHelloError, type ServerHelloAnswer } from '../../pki/tls-hello.js'
import { classifyNetworkError, destination, NetworkError, tlsOptions, type NetOptions } from './net.js'
import { fail, ok, skipped, warn, type Outcome } from './result.js'

/** What node:tls may negotiate: the TLS 1.2 suites of the rules, and TLS 1.3's AES-GCM suites. */
const ALLOWED_CIPHERS = [...ECDHE_AES_GCM_SUITES.values(), 'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'].join(':')

const RULES = 'Apple requires TLS 1.2 or newer with ECDHE and AES-GCM and, on TLS 1.2, the Extended Master Secret (support.apple.com/126655)'
const PROXY_FIX = 'configure the TLS proxy as README "Deploying behind a TLS reverse proxy" shows (nginx: ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:...)'

interface Handshake {
  protocol: string
  cipher: string
  keyType?: string
  keyBits?: number
}

export async function checkTls(url: URL, netOptions: NetOptions): Promise<Outcome> {
  const where = url.port ? url.host : `${url.hostname}:443`
  let handshake: Handshake
  try {
    handshake = await connect(url, netOptions)
  } catch (err) {
    const e = classifyNetworkError(err, where)
    if (e.kind === 'offline') return skipped(`${e.message}`, 'run the doctor where the network reaches it')
    if (e.kind === 'refused') return fail(e.message, 'the TLS proxy must listen there')
    if (e.kind === 'tls' && /ALERT|NO_SHARED_CIPHER|NO_CIPHERS|UNSUPPORTED_PROTOCOL/.test(e.code)) {
      return fail(`${where} offers neither TLS 1.3 nor TLS 1.2 with ECDHE and AES-GCM (${e.code}): ${RULES}`, PROXY_FIX)
    }
    if (e.code === 'ERR_SSL_WRONG_VERSION_NUMBER') return fail(e.message, 'TLS must be served there (by the TLS proxy)')
    if (e.kind === 'tls') return fail(`${e.message}: devices refuse it too`, `serve a certificate for ${url.hostname} from a public CA (with its intermediates), as devices trust only those during enrollment`)
    return fail(e.message)
  }

  const key = handshake.keyType === 'RSA' && handshake.keyBits !== undefined && handshake.keyBits < 2048 ? `an RSA key of ${handshake.keyBits} bits` : handshake.keyType === 'EC' && handshake.keyBits !== undefined && handshake.keyBits < 256 ? `an EC key of ${handshake.keyBits} bits` : undefined
  if (key) return fail(`the certificate of ${where} has ${key}: Apple requires RSA 2048 or EC 256 bits at least`, 'issue a new certificate with a larger key')

  let hello: ServerHelloAnswer | undefined
  try {
    hello = await probeTls12(url, netOptions)
  } catch (err) {
    // The first connection worked: a failure here is this probe's, not the server's.
    hello = undefined
    if (handshake.protocol === 'TLSv1.2') return warn(`TLS 1.2 with ${handshake.cipher}, but whether it uses the Extended Master Secret could not be read (${(err as Error).message})`)
  }
  const ems = hello?.kind === 'hello' && hello.extensions.includes(EXTENSION.extendedMasterSecret)
  const negotiated = `${handshake.protocol.replace('v', ' ')} with ${handshake.cipher}`
  if (handshake.protocol === 'TLSv1.2' && !ems) {
    return fail(`${negotiated} without the Extended Master Secret: ${RULES}`, 'enable Extended Master Secret on the proxy or load balancer (OpenSSL enables it unless told not to; check the load balancer\'s TLS policy)')
  }
  if (hello?.kind === 'hello' && !ems) {
    // Devices with TLS 1.3 use it; only a client limited to TLS 1.2 meets the missing extension.
    return warn(`${negotiated}; its TLS 1.2 lacks the Extended Master Secret`, 'enable Extended Master Secret for TLS 1.2 as well (or offer TLS 1.3 only)')
  }
  return ok(`${negotiated}${hello?.kind === 'hello' ? ', TLS 1.2 with the Extended Master Secret' : ''}: meets Apple's rules`)
}

function connect(url: URL, netOptions: NetOptions): Promise<Handshake> {
  const to = destination(url, netOptions)
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: to.host,
      port: to.port,
      servername: to.servername,
      minVersion: 'TLSv1.2',
      ciphers: ALLOWED_CIPHERS,
      timeout: netOptions.timeoutMs,
      ...tlsOptions(netOptions),
    })
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate()
      const result: Handshake = {
        protocol: socket.getProtocol() ?? 'unknown',
        cipher: socket.getCipher().standardName ?? socket.getCipher().name,
        keyType: cert.pubkey ? (cert.asn1Curve || cert.nistCurve ? 'EC' : cert.modulus ? 'RSA' : undefined) : undefined,
        keyBits: cert.bits,
      }
      socket.destroy()
      resolve(result)
    })
    socket.once('timeout', () => socket.destroy(Object.assign(new Error('no TLS handshake in time'), { code: 'timeout' })))
    socket.once('error', reject)
  })
}

/** Sends the TLS 1.2 ClientHello and reads the answer (a ServerHello or an alert). */
function probeTls12(url: URL, netOptions: NetOptions): Promise<ServerHelloAnswer> {
  const to = destination(url, netOptions)
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: to.host, port: to.port, timeout: netOptions.timeoutMs })
    let received = Buffer.alloc(0)
    const done = (err: Error | undefined, answer?: ServerHelloAnswer) => {
      socket.destroy()
      if (answer) resolve(answer)
      else reject(err)
    }
    socket.once('connect', () => socket.write(clientHello(to.servername ?? url.hostname)))
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      try {
        const answer = readServerHello(received)
        if (answer) done(undefined, answer)
      } catch (err) {
        done(err instanceof TlsHelloError ? err : new Error(String(err)))
      }
    })
    socket.once('timeout', () => done(new NetworkError('offline', 'timeout', 'no ServerHello in time')))
    socket.once('error', (err) => done(err))
    socket.once('close', () => done(new Error('the server closed the connection without a ServerHello')))
  })
}
