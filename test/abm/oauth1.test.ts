/**
 * The OAuth 1.0a signer against RFC 5849's own example (section 1.2, HMAC-SHA1) and its encoding rules,
 * and the header Apple's "Authenticating for Automated Device Enrollment" shows.
 */
import { describe, expect, it } from 'vitest'
import { baseStringUri, hmacSha1Signature, oauthAuthorization, percentEncode, signatureBaseString } from '../../src/abm/oauth1.js'

const RFC_CREDENTIALS = { consumerKey: 'dpf43f3p2l4k3l03', consumerSecret: 'kd94hf93k423kf44', accessToken: 'nnch734d00sl2jdk', accessSecret: 'pfkkdhi9sl3r4s00' }

describe('OAuth 1.0a HMAC-SHA1 (RFC 5849)', () => {
  it("reproduces RFC 5849 section 1.2's base string and signature", () => {
    const url = new URL('http://photos.example.net/photos?file=vacation.jpg&size=original')
    const params = {
      oauth_consumer_key: 'dpf43f3p2l4k3l03',
      oauth_token: 'nnch734d00sl2jdk',
      oauth_signature_method: 'HMAC-SHA1',
      oauth_timestamp: '137131202',
      oauth_nonce: 'chapoH',
    }
    const base = signatureBaseString('GET', url, params)
    expect(base).toBe(
      'GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202%26oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal',
    )
    expect(hmacSha1Signature(base, RFC_CREDENTIALS.consumerSecret, RFC_CREDENTIALS.accessSecret)).toBe('MdpQcU8iPSUjWoN/UDMsK2sui9I=')
  })

  it('encodes as RFC 5849 section 3.6 says: unreserved kept, the rest %XX uppercase over UTF-8', () => {
    expect(percentEncode('Ladies + Gentlemen')).toBe('Ladies%20%2B%20Gentlemen')
    expect(percentEncode('An encoded string!')).toBe('An%20encoded%20string%21')
    expect(percentEncode("Dogs, Cats & Mice*'()")).toBe('Dogs%2C%20Cats%20%26%20Mice%2A%27%28%29')
    expect(percentEncode('☃')).toBe('%E2%98%83')
    expect(percentEncode('-._~azAZ09')).toBe('-._~azAZ09')
  })

  it('normalises the base string URI and sorts repeated parameters by value (sections 3.4.1.2, 3.4.1.3.2)', () => {
    expect(baseStringUri(new URL('HTTPS://MdmEnrollment.Apple.com:443/session'))).toBe('https://mdmenrollment.apple.com/session')
    expect(baseStringUri(new URL('http://127.0.0.1:8080/session?x=1'))).toBe('http://127.0.0.1:8080/session')
    const base = signatureBaseString('get', new URL('http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b&a3=2+q'), { oauth_nonce: '7d8f3e4a', realm: 'ignored', oauth_signature: 'ignored' })
    expect(base).toBe(`GET&http%3A%2F%2Fexample.com%2Frequest&${percentEncode('a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&oauth_nonce=7d8f3e4a')}`)
  })

  it("writes Apple's header: realm ADM, the token's keys, HMAC-SHA1, timestamp, nonce and version on one line", () => {
    const header = oauthAuthorization({ method: 'GET', url: 'https://mdmenrollment.apple.com/session', credentials: RFC_CREDENTIALS, timestamp: 137131200, nonce: '4572616e48616d6d65724c61686176' })
    expect(header).not.toContain('\n')
    expect(header).toMatch(/^OAuth realm="ADM", oauth_consumer_key="dpf43f3p2l4k3l03", oauth_token="nnch734d00sl2jdk", oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131200", oauth_nonce="4572616e48616d6d65724c61686176", oauth_version="1.0", oauth_signature="[A-Za-z0-9%]+"$/)
    const signature = decodeURIComponent(/oauth_signature="([^"]+)"/.exec(header)![1]!)
    const base = signatureBaseString('GET', new URL('https://mdmenrollment.apple.com/session'), {
      oauth_consumer_key: 'dpf43f3p2l4k3l03',
      oauth_token: 'nnch734d00sl2jdk',
      oauth_signature_method: 'HMAC-SHA1',
      oauth_timestamp: '137131200',
      oauth_nonce: '4572616e48616d6d65724c61686176',
      oauth_version: '1.0',
    })
    expect(signature).toBe(hmacSha1Signature(base, RFC_CREDENTIALS.consumerSecret, RFC_CREDENTIALS.accessSecret))
    // A fresh nonce for every request.
    const a = oauthAuthorization({ method: 'GET', url: 'https://mdmenrollment.apple.com/session', credentials: RFC_CREDENTIALS })
    const b = oauthAuthorization({ method: 'GET', url: 'https://mdmenrollment.apple.com/session', credentials: RFC_CREDENTIALS })
    expect(/oauth_nonce="([^"]+)"/.exec(a)![1]).not.toBe(/oauth_nonce="([^"]+)"/.exec(b)![1])
  })
})
