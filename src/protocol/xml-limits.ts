/**
 * Limits on parsed XML (plists, SAML). Nesting depth is measured on the DOM the parser produced, without
 * recursion, not on the text with a regex: markup inside attribute values (`<array a="/>">`) makes a
 * text scan disagree with the parser, and our recursive readers would then overflow the stack.
 */
import type { Node as XmlNode } from '@xmldom/xmldom'

const ELEMENT_NODE = 1

/** True when an element of `root` sits more than `max` elements deep (root itself is depth 1). */
export function elementDepthExceeds(root: XmlNode, max: number): boolean {
  const stack: [XmlNode, number][] = [[root, 1]]
  while (stack.length) {
    const [node, depth] = stack.pop()!
    if (depth > max) return true
    for (let c: XmlNode | null = node.firstChild; c; c = c.nextSibling) {
      if (c.nodeType === ELEMENT_NODE) stack.push([c, depth + 1])
    }
  }
  return false
}

/** Characters XML 1.0 forbids even as character references; Postgres text cannot hold U+0000 either. */
// eslint-disable-next-line no-control-regex
export const XML_ILLEGAL_CHARACTERS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/
