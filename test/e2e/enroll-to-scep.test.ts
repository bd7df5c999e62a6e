/**
 * Issue 3 meets issue 6: the challenge, URL and CA fingerprint in a real enrollment profile get the
 * device its identity certificate from the real scepclient, bound to that profile's enrollment.
 */
import { createHash, X509Certificate } from 'node:crypto'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { PlistDict } from '../../src/protocol/plist.js'
import { certificateFingerprint, findDeviceCertificate } from '../../src/services/device-certificates.js'
import { payloadOf, postEnroll, signIn, verifyProfile } from '../helpers/enroll.js'
import { buildTestApp, type TestApp } from '../helpers/app.js'

const run = promisify(execFile)

let t: TestApp
let address: string
let dir: string

beforeAll(async () => {
  t = await buildTestApp()
  address = await t.app.listen({ port: 0, host: '127.0.0.1' })
  dir = mkdtempSync(path.join(tmpdir(), 'byod-mdm-enroll-scep-'))
})
afterAll(async () => {
  await t.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('enrollment profile -> SCEP', () => {
  it('the profile\'s challenge gets one certificate from the CA the profile pins, for that enrollment', async () => {
    const { token, tokenId, userId } = await signIn(t.app)
    const res = await postEnroll(t.app, { token })
    expect(res.statusCode).toBe(200)
    const scep = payloadOf(verifyProfile(t.app, res.rawPayload), 'com.apple.security.scep').PayloadContent as PlistDict
    const url = new URL(scep.URL as string)

    // The CA that GetCACert serves is the one the profile pins (CAFingerprint: SHA-1 of its DER).
    const caRes = await t.app.inject(`${url.pathname}?operation=GetCACert`)
    expect(Buffer.from(scep.CAFingerprint as Uint8Array).equals(createHash('sha1').update(caRes.rawPayload).digest())).toBe(true)

    const challenge = scep.Challenge as string
    const client = path.join(dir, 'device')
    const args = ['-server-url', `${address}${url.pathname}`, '-private-key', path.join(client, 'key.pem'), '-certificate', path.join(client, 'cert.pem'), '-challenge', challenge]
    mkdirSync(client)
    const first = await run('scepclient', args, { timeout: 20_000 })
    expect(first.stdout + first.stderr).toContain('pkiStatus=SUCCESS')

    const cert = new X509Certificate(readFileSync(path.join(client, 'cert.pem')))
    const record = await t.app.db.prisma.enrollmentProfile.findFirstOrThrow({ where: { accessTokenId: tokenId } })
    const row = await findDeviceCertificate(t.app.db.prisma, certificateFingerprint(cert.raw))
    expect(row).toMatchObject({ userId, accessTokenId: tokenId, enrollmentProfileId: record.id })

    // A second device (or a replay) with the same profile's challenge gets nothing.
    const other = path.join(dir, 'other')
    mkdirSync(other)
    const again = await run('scepclient', ['-server-url', `${address}${url.pathname}`, '-private-key', path.join(other, 'key.pem'), '-challenge', challenge], { timeout: 20_000 }).catch((err: { stdout?: string; stderr?: string }) => err)
    expect(`${again.stdout ?? ''}${again.stderr ?? ''}`).toContain('failInfo: badRequest')
    expect(await t.app.db.prisma.deviceCertificate.count({ where: { accessTokenId: tokenId } })).toBe(1)
  })
})
