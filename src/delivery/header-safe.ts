/** Everything but visible ASCII, and `%` itself so that decoding is unambiguous. */
const UNSAFE = /[^\x21-\x24\x26-\x7e]/gu

/**
 * A header value made of visible ASCII only: every other character (space, controls, DEL, anything
 * beyond U+007E) becomes the %XX of each byte of its UTF-8 encoding, and `%` becomes %25, so
 * `decodeURIComponent` gives the value back. Event names and `created-at` come from outside, and
 * undici refuses a header with CR, LF, NUL or a character above U+00FF: without this one event
 * could never be delivered. A lone surrogate, which UTF-8 cannot encode, becomes U+FFFD (%EF%BF%BD).
 */
export function headerSafe(value: string): string {
  return value.replace(UNSAFE, (character) => {
    let encoded = ''
    for (const byte of Buffer.from(character, 'utf8')) encoded += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
    return encoded
  })
}
