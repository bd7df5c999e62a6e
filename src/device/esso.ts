/**
 * The Enrollment SSO document the enroll 401 names (X-Apple-MDM-ESSO or -Developer, PROTOCOL.md section
 * 5), fetched as the device fetches it with the legacy profiles its declarations point to, and checked
 * with the same validator the server runs on its own documents (src/protocol/esso-validate.ts).
 */
import { parseSignedData, verifySingleSigner } from '../pki/cms.js'
import type { Declaration } from '../protocol/declarations.js'
import { validateEssoDocument } from '../protocol/esso.js'
import { networkFacts, responseFacts, StepFailure } from './steps.js'
import { TransportError, type Transport } from './transport.js'

export interface EssoDocumentCheck {
  mode: 'standard' | 'developer'
  /** The declarations the document hands the device: the sync after enrollment must serve them unchanged. */
  declarations: Declaration[]
}

export async function checkEssoDocument(transport: Transport, esso: { url: string; developer: boolean }, userAgent: string): Promise<EssoDocumentCheck> {
  const get = async (url: string, what: string) => {
    try {
      return await transport.request('GET', url, { headers: { accept: 'application/json', 'user-agent': userAgent } })
    } catch (err) {
      if (err instanceof TransportError) throw new StepFailure('esso', networkFacts(err, what))
      throw err
    }
  }
  const res = await get(esso.url, 'the Enrollment SSO document')
  if (res.status !== 200) throw new StepFailure('esso', responseFacts(res, '200 JSON (the Enrollment SSO document)', esso.url))
  let doc: Record<string, unknown>
  try {
    doc = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>
  } catch {
    throw new StepFailure('esso', { expected: 'JSON', got: res.body.toString('utf8').slice(0, 80), status: 200, url: esso.url })
  }
  const declarations = (Array.isArray(doc.Declarations) ? doc.Declarations : []).flatMap((b) => {
    try {
      return [JSON.parse(Buffer.from(String(b), 'base64').toString('utf8')) as Declaration]
    } catch {
      return []
    }
  })
  const legacy = new Map<string, Buffer>()
  for (const d of declarations) {
    const profileUrl = d.Type === 'com.apple.configuration.legacy' ? d.Payload?.ProfileURL : undefined
    if (typeof profileUrl !== 'string') continue
    const got = await get(profileUrl, 'the legacy profile').catch(() => undefined)
    if (got?.status === 200) legacy.set(profileUrl, got.body)
  }
  const mode = esso.developer ? 'developer' : 'standard'
  const problems = validateEssoDocument(doc, mode, { unwrapProfile: (signed) => verifySingleSigner(parseSignedData(signed)).content, legacyProfile: (u) => legacy.get(u) })
  if (problems.length) {
    throw new StepFailure('esso', {
      expected: "an Enrollment SSO document that obeys Apple's rules (PROTOCOL.md section 5)",
      got: problems.join('; '),
      status: 200,
      url: esso.url,
      fix: "a device fails the enrollment on such a document: fix the ESSO_* settings or the team's esso settings",
    })
  }
  return { mode, declarations }
}
