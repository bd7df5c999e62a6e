/**
 * A stand-in enroll request (`--self-signed`): this model's PRODUCT and VERSION signed like a device
 * signs (attached CMS, SHA-1) but by a self-signed key instead of an Apple-issued identity. A server in
 * ENROLL_DEVICE_SIGNATURE=log mode accepts it with a warning; a strict one refuses it for iPhone and iPad
 * (and accepts it, warning, for Mac and Vision Pro, whose Apple chain is not pinned yet).
 */
import { generateKeyPair } from 'node:crypto'
import { promisify } from 'node:util'
import { signCms } from '../pki/cms.js'
import { nameDer } from '../pki/names.js'
import { selfSignedCertificate, type KeyPairLike } from '../pki/scep/client.js'
import { buildEnrollRequest } from '../protocol/enroll-request.js'
import type { DeviceModel } from './models.js'

const generateKeyPairAsync = promisify(generateKeyPair)

export async function selfSignedEnrollBody(model: DeviceModel): Promise<Buffer> {
  const keys = (await generateKeyPairAsync('rsa', { modulusLength: 2048 })) as KeyPairLike
  const certificate = selfSignedCertificate(keys, nameDer([['CN', `byod-mdm simulator ${model.productName}`]]))
  const content = buildEnrollRequest({ product: model.productName, version: model.buildVersion, language: 'en-US' })
  return signCms({ content, certificate, privateKey: keys.privateKey, digest: 'sha1' })
}
