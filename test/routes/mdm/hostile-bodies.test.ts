/**
 * SECURITY.md rows 1-6 against PUT /mdm/apple/mdm: hostile bodies, correctly signed by an enrolled device
 * so that they reach the parser, on both channels. Each gets its exact status with a clear message and
 * writes nothing (the check-in tables compared in full before and after).
 */
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, type TestApp } from '../../helpers/app.js'
import { activeDevice, checkinRows, COMMAND, type Device } from '../../helpers/device.js'
import { fastestOfEach, namespacePerLevel, ordinaryDicts, timed } from '../../helpers/hostile-xml.js'

let t: TestApp
let device: Device

beforeAll(async () => {
  t = await buildTestApp()
  device = await activeDevice(t.app)
})
afterAll(async () => t?.close())

const XML = '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
const plist = (inner: string) => `${XML}<plist version="1.0">${inner}</plist>`
const dict = (entries: string) => plist(`<dict>${entries}</dict>`)
const str = (k: string, v: string) => `<key>${k}</key><string>${v}</string>`

/** Sends `body` signed by the device on `channel`; expects `status` with a message matching `message`, and no write. */
async function rejected(body: string | Buffer, status: number, message: RegExp, contentType = 'application/x-apple-aspen-mdm-checkin') {
  const before = await checkinRows(t.app)
  const res = await device.put(body, { contentType })
  expect(res.statusCode, res.body).toBe(status)
  expect(res.json().message).toMatch(message)
  expect(await checkinRows(t.app)).toEqual(before)
  return res
}

describe('row 1: malformed plists', () => {
  const id = () => str('EnrollmentID', device.enrollmentId)
  const topic = () => str('Topic', device.topic)

  it('truncated XML', async () => {
    const whole = device.body('token-update').toString('utf8')
    await rejected(whole.slice(0, Math.floor(whole.length * 0.7)), 400, /malformed XML|unclosed|expected/i)
  })

  it('wrong root element, and a plist whose top level is not a dict', async () => {
    await rejected(`${XML}<html><dict/></html>`, 400, /root element is not <plist>/)
    await rejected(plist('<array><string>TokenUpdate</string></array>'), 400, /top level is not a dict/)
  })

  it('missing and unknown MessageType', async () => {
    await rejected(dict(id() + topic()), 400, /MessageType is missing/)
    await rejected(dict(str('MessageType', 'Reboot') + id() + topic()), 400, /unknown MessageType/)
    await rejected(dict(`<key>MessageType</key><integer>1</integer>${id()}`), 400, /MessageType is missing/)
  })

  it('wrong types: Token as a string, AwaitingConfiguration as a string, EnrollmentID as an integer', async () => {
    const tokenUpdate = (extra: string) => dict(str('MessageType', 'TokenUpdate') + topic() + str('PushMagic', 'x') + extra)
    await rejected(tokenUpdate(`${id()}${str('Token', 'AQID')}`), 400, /TokenUpdate: Token/)
    await rejected(tokenUpdate(`${id()}<key>Token</key><data>AQID</data>${str('AwaitingConfiguration', 'no')}`), 400, /TokenUpdate: AwaitingConfiguration/)
    await rejected(dict(`${str('MessageType', 'Authenticate')}${topic()}<key>EnrollmentID</key><integer>7</integer>`), 400, /Authenticate: EnrollmentID/)
  })

  it('duplicate keys', async () => {
    await rejected(dict(str('MessageType', 'CheckOut') + id() + topic() + str('MessageType', 'Authenticate')), 400, /duplicate key "MessageType"/)
  })

  it('a device enrollment message (UDID, no EnrollmentID) signed by an identity bound to a user enrollment', async () => {
    // The identity check comes first: this certificate belongs to the user enrollment, whatever the body claims.
    // A fresh identity with a user-enrollment profile sending a UDID is refused in test/e2e/adde.test.ts.
    await rejected(dict(str('MessageType', 'Authenticate') + topic() + str('UDID', '00008030-000A1D2E3F40802E')), 403, /another EnrollmentID/)
  })

  it('command reports: unknown Status, missing CommandUUID, wrong ErrorChain', async () => {
    await rejected(dict(id() + str('Status', 'Done')), 400, /command report: Status/, COMMAND)
    await rejected(dict(id() + str('Status', 'Acknowledged')), 400, /CommandUUID is required/, COMMAND)
    await rejected(dict(`${id()}${str('Status', 'Error')}${str('CommandUUID', 'c')}<key>ErrorChain</key><string>x</string>`), 400, /ErrorChain/, COMMAND)
  })
})

describe('row 2: formats other than XML are never parsed', () => {
  it('binary plist, a "bplist" string and OpenStep text', async () => {
    // Real binary plists are not UTF-8, which stops them even before the format check.
    await rejected(Buffer.concat([Buffer.from('bplist00'), Buffer.from([0xd1, 0x01, 0x02, 0x5b]), Buffer.alloc(40, 0x41)]), 400, /not valid UTF-8|binary plists are not accepted/)
    await rejected('bplist00{MessageType = CheckOut;}', 400, /binary plists are not accepted/)
    await rejected(`{ MessageType = CheckOut; EnrollmentID = "${device.enrollmentId}"; }`, 400, /not an XML property list/)
    await rejected('{ "Status": "Idle" }', 400, /not an XML property list/, COMMAND)
  })
})

describe('row 3: DOCTYPE with entities', () => {
  it('billion laughs is refused before parsing', async () => {
    const entities = ['<!ENTITY lol0 "lol">', ...Array.from({ length: 9 }, (_v, i) => `<!ENTITY lol${i + 1} "${`&lol${i};`.repeat(10)}">`)].join('')
    const body = `<?xml version="1.0"?><!DOCTYPE plist [${entities}]><plist version="1.0"><dict><key>MessageType</key><string>&lol9;</string></dict></plist>`
    const before = process.memoryUsage().heapUsed
    await rejected(body, 400, /DOCTYPE declarations other than the Apple plist DOCTYPE/)
    // A billion "lol"s would be gigabytes; refusing before expansion keeps the heap where it was.
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 * 1024 * 1024)
  })

  it('a SYSTEM entity fetches nothing', async () => {
    let hits = 0
    const server = http.createServer((_req, res) => {
      hits++
      res.end('<string>Authenticate</string>')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/entity`
      await rejected(`<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY xxe SYSTEM "${url}">]><plist version="1.0"><dict><key>MessageType</key><string>&xxe;</string></dict></plist>`, 400, /DOCTYPE/)
      await rejected(`<?xml version="1.0"?><!DOCTYPE plist SYSTEM "${url}"><plist version="1.0"><dict/></plist>`, 400, /DOCTYPE/)
      expect(hits).toBe(0)
    } finally {
      server.close()
    }
  })
})

describe('row 4: prototype keys', () => {
  it('__proto__, constructor and prototype are refused and Object.prototype stays untouched', async () => {
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      await rejected(dict(`${str('MessageType', 'CheckOut')}${str('EnrollmentID', device.enrollmentId)}<key>${key}</key><dict><key>polluted</key><true/></dict>`), 400, new RegExp(`key "${key}" is not allowed`))
    }
    await rejected(dict(`${str('EnrollmentID', device.enrollmentId)}${str('Status', 'Idle')}<key>__proto__</key><dict><key>polluted</key><true/></dict>`), 400, /__proto__/, COMMAND)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')).toBe(false)
  })
})

describe('row 5: deep nesting', () => {
  it('10,000 nested arrays and dicts are refused without a crash', async () => {
    await rejected(plist(`${'<array>'.repeat(10_000)}${'</array>'.repeat(10_000)}`), 400, /nested deeper than/)
    await rejected(plist(`${'<dict><key>a</key>'.repeat(10_000)}<true/>${'</dict>'.repeat(10_000)}`), 400, /nested deeper than/, COMMAND)
    // Markup inside an attribute value once fooled a text scan for depth (and the stack overflowed: 500).
    await rejected(plist(`${'<array a="/>">'.repeat(30_000)}${'</array>'.repeat(30_000)}`), 400, /nested deeper than/)
    expect((await device.idle()).statusCode).toBe(200)
  })

  it('a control character (&#0;) in a string is refused before it reaches the database', async () => {
    await rejected(dict(`${str('MessageType', 'Authenticate')}${str('EnrollmentID', device.enrollmentId)}${str('Topic', 'com.apple.mgmt.x')}<key>ProductName</key><string>X&#0;Y</string>`), 400, /control character/)
    expect((await device.idle()).statusCode).toBe(200)
  })
})

describe('row 25: XML shapes the parser is slow on', () => {
  const SIZE = 1_000_000

  /**
   * `work` while /healthz is asked again and again: the worst time /healthz took meanwhile, counted from
   * a timer that fires when the event loop is free (a blocked loop delays it) to the answer.
   */
  async function withHealthProbe<T>(work: Promise<T>): Promise<{ result: T; worstHealthz: number; probes: number }> {
    let done = false
    let worstHealthz = 0
    let probes = 0
    const probe = (async () => {
      do {
        const start = performance.now()
        await new Promise((resolve) => setTimeout(resolve, 1))
        expect((await t.app.inject('/healthz')).statusCode).toBe(200)
        worstHealthz = Math.max(worstHealthz, performance.now() - start)
        probes++
      } while (!done)
    })()
    const result = await work
    done = true
    await probe
    return { result, worstHealthz, probes }
  }

  it('a 1 MB check-in body nesting a new namespace per level is refused 400 in at most 5x the time of a normal 1 MB Idle, /healthz answered meanwhile', async () => {
    // The normal request of the same size: the recorded Idle report carrying a long list of dicts.
    const idle = device.body('idle').toString('utf8')
    const padding = (bytes: number) => `<key>InstalledApplicationList</key>${ordinaryDicts(bytes)}</dict>`
    const normal = idle.replace(/<\/dict>\s*<\/plist>\s*$/, `${padding(SIZE - idle.length - 60)}</plist>`)
    const bomb = plist(namespacePerLevel(SIZE - plist('').length))
    for (const body of [normal, bomb]) {
      expect(Buffer.byteLength(body)).toBeLessThanOrEqual(SIZE)
      expect(Buffer.byteLength(body)).toBeGreaterThan(0.95 * SIZE)
    }
    expect((await device.put(normal, { contentType: COMMAND })).statusCode).toBe(200)
    const refusal = await rejected(bomb, 400, /namespaces|nested deeper than/)
    expect(refusal.json().error).toBe('invalid_plist')

    const [reference, took] = await fastestOfEach(
      2,
      async () => expect((await device.put(normal, { contentType: COMMAND })).statusCode).toBe(200),
      async () => expect((await device.put(bomb)).statusCode).toBe(400),
    )
    expect(took, `${took.toFixed(0)} ms, normal ${reference.toFixed(0)} ms`).toBeLessThanOrEqual(5 * reference)
    expect(took).toBeLessThan(2000)

    const { result, worstHealthz, probes } = await withHealthProbe(device.put(bomb))
    expect(result.statusCode).toBe(400)
    expect(probes).toBeGreaterThan(0)
    expect(worstHealthz, `/healthz took ${worstHealthz.toFixed(0)} ms, a normal 1 MB Idle ${reference.toFixed(0)} ms`).toBeLessThanOrEqual(5 * reference)
    expect(worstHealthz).toBeLessThan(2000)
    expect((await device.idle()).statusCode).toBe(200)
  })
})

describe('row 6: size, encoding, media type, stalled clients', () => {
  it('a body over 1 MiB is 413 without being read', async () => {
    const big = Buffer.alloc(1024 * 1024 + 1, 0x20)
    const before = await checkinRows(t.app)
    const res = await device.put(big, { signature: 'AAAA' })
    expect(res.statusCode).toBe(413)
    expect(await checkinRows(t.app)).toEqual(before)
  })

  it('Content-Encoding gzip is 415, even when the signature is over the compressed bytes', async () => {
    const gz = gzipSync(device.body('idle'))
    const res = await device.put(gz, { contentType: COMMAND, headers: { 'content-encoding': 'gzip' } })
    expect(res.statusCode).toBe(415)
  })

  it('a missing or foreign Content-Type is 415', async () => {
    const before = await checkinRows(t.app)
    for (const contentType of [null, 'application/json', 'text/xml', 'application/x-apple-aspen-config', 'application/x-apple-aspen-mdm-checkin-x']) {
      const res = await device.put(device.body('idle'), { contentType })
      expect(res.statusCode, String(contentType)).toBe(415)
      expect(res.json().message).toMatch(/Content-Type must be application\/x-apple-aspen-mdm-checkin or application\/x-apple-aspen-mdm/)
    }
    expect(await checkinRows(t.app)).toEqual(before)
  })

  it('a client that stops sending in the middle of the body is cut off by the server, nothing written', async () => {
    const slow = await buildTestApp({ env: { REQUEST_TIMEOUT: '1' }, database: t.database })
    try {
      const address = new URL(await slow.app.listen({ port: 0, host: '127.0.0.1' }))
      const before = await checkinRows(t.app)
      const body = device.body('idle')
      const socket = net.connect(Number(address.port), address.hostname)
      const closed = new Promise<string>((resolve) => {
        let received = ''
        socket.on('data', (d) => (received += d.toString('latin1')))
        socket.on('close', () => resolve(received))
      })
      socket.write(
        `PUT /mdm/apple/mdm HTTP/1.1\r\nHost: x\r\nContent-Type: ${COMMAND}\r\nMdm-Signature: ${device.sign(body)}\r\nContent-Length: ${body.length}\r\n\r\n${body.subarray(0, 20).toString('latin1')}`,
      )
      const answer = await closed
      // Either a 408 or a plain close: the request never reached the handler.
      expect(answer === '' || answer.startsWith('HTTP/1.1 408')).toBe(true)
      expect(await checkinRows(t.app)).toEqual(before)
    } finally {
      await slow.app.close()
    }
  })
})
