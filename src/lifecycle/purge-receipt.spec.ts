import { describe, expect, it } from '@jest/globals';
import { canonicalJson, receiptDigest } from './purge-receipt.js';

describe('canonical JSON of purge receipts', () => {
  it('sorts keys at every level, keeps array order and has no white space', () => {
    expect(canonicalJson({ b: [3, { z: null, a: 'x' }], a: { d: true, c: 1 } })).toBe('{"a":{"c":1,"d":true},"b":[3,{"a":"x","z":null}]}');
  });

  it('gives the same text whatever order the keys were written in (as jsonb hands them back)', () => {
    const one = { tenant: { slug: 'acme', id: '1' }, rows: 3 };
    const two = { rows: 3, tenant: { id: '1', slug: 'acme' } };
    expect(canonicalJson(one)).toBe(canonicalJson(two));
    expect(receiptDigest(one)).toBe(receiptDigest(two));
  });

  it('escapes strings as JSON does and leaves out undefined members', () => {
    expect(canonicalJson({ s: 'a"b\\c\n\u00e9', gone: undefined })).toBe('{"s":"a\\"b\\\\c\\n\u00e9"}');
  });

  it('refuses values that JSON cannot carry unchanged', () => {
    expect(() => canonicalJson({ n: Number.NaN })).toThrow(/non-finite/);
    expect(() => canonicalJson({ n: 1n })).toThrow(/bigint/);
    expect(() => canonicalJson([undefined])).toThrow(/undefined/);
  });

  it('digests the UTF-8 bytes of the canonical text with SHA-256', () => {
    // sha256('{"a":1}'), computed independently: printf '{"a":1}' | sha256sum
    expect(receiptDigest({ a: 1 })).toBe('015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862');
    expect(receiptDigest({ a: 2 })).not.toBe(receiptDigest({ a: 1 }));
  });
});
