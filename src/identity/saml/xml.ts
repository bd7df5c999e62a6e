/**
 * Strict XML reading for SAML documents (IdP metadata, SAMLResponse). Pure: no I/O.
 *
 * A pre-scan refuses what a SAML document never needs and attackers rely on: DOCTYPE and entity
 * declarations (XXE, billion laughs), processing instructions and comments. Comments matter for SAML in
 * particular: exclusive canonicalization drops them, so a comment inserted into a signed NameID
 * (`alice@example.com<!---->.evil.test`) keeps the signature valid while naive readers see only the
 * first text node (CVE-2017-11427 and relatives). Refusing every comment closes that class for good.
 */
import { DOMParser, type Document, type Element, type Node as XmlNode } from '@xmldom/xmldom'
import { elementDepthExceeds } from '../../protocol/xml-limits.js'

export const NS = {
  protocol: 'urn:oasis:names:tc:SAML:2.0:protocol',
  assertion: 'urn:oasis:names:tc:SAML:2.0:assertion',
  metadata: 'urn:oasis:names:tc:SAML:2.0:metadata',
  dsig: 'http://www.w3.org/2000/09/xmldsig#',
} as const

export class XmlRefused extends Error {
  override name = 'XmlRefused'
}

const MAX_DEPTH = 64

/** Parses `xml` with every XML error fatal, after the pre-scan. Throws XmlRefused. */
export function parseStrictXml(xml: string): Document {
  const body = xml.replace(/^\uFEFF/, '')
  for (const m of body.matchAll(/<[!?][^>]*>?/g)) {
    const tag = m[0]
    if (m.index === body.search(/\S/) && /^<\?xml\s/.test(tag)) continue
    if (tag.startsWith('<![CDATA[')) continue
    if (tag.startsWith('<!--')) throw new XmlRefused('XML comments are not accepted')
    if (/^<!DOCTYPE/i.test(tag)) throw new XmlRefused('DOCTYPE declarations are not accepted')
    throw new XmlRefused('entity declarations and processing instructions are not accepted')
  }
  // xmldom wraps what onError throws into its own ParseError; keep ours to rethrow it unwrapped.
  let refused: XmlRefused | undefined
  try {
    const doc = new DOMParser({
      onError: (level: string, message: string) => {
        refused ??= new XmlRefused(`malformed XML (${level}): ${String(message).split('\n')[0]}`)
        throw refused
      },
    }).parseFromString(body, 'text/xml')
    if (!doc.documentElement) throw new XmlRefused('no root element')
    // Checked on the parsed tree: a text scan can be fooled by markup inside attribute values.
    if (elementDepthExceeds(doc.documentElement, MAX_DEPTH)) throw new XmlRefused(`XML nested deeper than ${MAX_DEPTH}`)
    return doc
  } catch (err) {
    if (refused) throw refused
    if (err instanceof XmlRefused) throw err
    throw new XmlRefused(`malformed XML: ${(err as Error).message.split('\n')[0]}`)
  }
}

const ELEMENT_NODE = 1
const TEXT_NODE = 3
const CDATA_NODE = 4

/** Element children of `node` with the given namespace and local name. */
export function children(node: Element | Document, ns: string, localName: string): Element[] {
  const out: Element[] = []
  for (let c: XmlNode | null = node.firstChild; c; c = c.nextSibling) {
    if (c.nodeType === ELEMENT_NODE && (c as Element).namespaceURI === ns && (c as Element).localName === localName) out.push(c as Element)
  }
  return out
}

/** The only such child, undefined when there is none; throws when there are several. */
export function onlyChild(node: Element, ns: string, localName: string): Element | undefined {
  const found = children(node, ns, localName)
  if (found.length > 1) throw new XmlRefused(`more than one <${localName}> in <${node.localName}>`)
  return found[0]
}

/** Every descendant element with the given namespace and local name. */
export function descendants(node: Element | Document, ns: string, localName: string): Element[] {
  return Array.from(node.getElementsByTagNameNS(ns, localName))
}

/** Text of a leaf element (text and CDATA joined); child elements are an error. */
export function textOf(node: Element): string {
  let text = ''
  for (let c: XmlNode | null = node.firstChild; c; c = c.nextSibling) {
    if (c.nodeType === TEXT_NODE || c.nodeType === CDATA_NODE) text += c.nodeValue ?? ''
    else if (c.nodeType === ELEMENT_NODE) throw new XmlRefused(`unexpected element inside <${node.localName}>`)
  }
  return text
}

/** An attribute value, or undefined when absent. */
export function attr(node: Element, name: string): string | undefined {
  return node.hasAttribute(name) ? node.getAttribute(name)! : undefined
}
