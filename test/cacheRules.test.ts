// The shared-cache rules (RFC 9111) as tables: what is stored and for how long, age, which
// variant a request selects, conditional answers, and how a 304 refreshes a stored response.

import test from 'ava';
import {
  cacheKey,
  currentAge,
  notModified,
  refreshedHeaders,
  requestDirectives,
  storability,
  usability,
  usableOnError,
  varyNames,
  varyValues,
} from '../dist/src/core/cache/httpCaching.js';

const DATE = 'Tue, 01 Dec 2026 10:00:00 GMT';
const AT = Date.parse(DATE);

test('storability: what a shared cache stores, and the freshness lifetime it gets', (t) => {
  const cases: [string, string[], number, string[], number, ReturnType<typeof storability>][] = [
    ['max-age', [], 200, ['cache-control', 'max-age=60'], 0, { store: true, lifetime: 60_000 }],
    ['s-maxage wins over max-age', [], 200, ['cache-control', 'max-age=60, s-maxage=5'], 0, { store: true, lifetime: 5000 }],
    ['Expires − Date', [], 200, ['date', DATE, 'expires', 'Tue, 01 Dec 2026 10:01:00 GMT'], 0, { store: true, lifetime: 60_000 }],
    ['an invalid Expires is expired', [], 200, ['date', DATE, 'expires', '0', 'etag', '"x"'], 0, { store: true, lifetime: 0 }],
    ['no lifetime: default_ttl', [], 200, [], 300_000, { store: true, lifetime: 300_000 }],
    ['no lifetime, no default, no validator', [], 200, [], 0, { store: false, reason: 'never fresh, no validator' }],
    ['no lifetime, a validator: stored to revalidate', [], 200, ['etag', '"v"'], 0, { store: true, lifetime: 0 }],
    ['no-cache: stored, always revalidated', [], 200, ['cache-control', 'no-cache, max-age=60', 'etag', '"v"'], 0, { store: true, lifetime: 0 }],
    ['stale-while-revalidate without validator', [], 200, ['cache-control', 'max-age=0, stale-while-revalidate=30'], 0, { store: true, lifetime: 0 }],
    ['no-store', [], 200, ['cache-control', 'no-store, max-age=60'], 0, { store: false, reason: 'no-store' }],
    ['private', [], 200, ['cache-control', 'private, max-age=60'], 0, { store: false, reason: 'private' }],
    ['Set-Cookie', [], 200, ['cache-control', 'max-age=60', 'set-cookie', 'a=1'], 0, { store: false, reason: 'set-cookie' }],
    ['Vary: *', [], 200, ['cache-control', 'max-age=60', 'vary', 'accept, *'], 0, { store: false, reason: 'vary *' }],
    ['request no-store', ['cache-control', 'no-store'], 200, ['cache-control', 'max-age=60'], 0, { store: false, reason: 'request no-store' }],
    ['Authorization', ['authorization', 'Bearer x'], 200, ['cache-control', 'max-age=60'], 0, { store: false, reason: 'authorization' }],
    ['Authorization with public', ['authorization', 'Bearer x'], 200, ['cache-control', 'public, max-age=60'], 0, { store: true, lifetime: 60_000 }],
    ['Authorization with s-maxage', ['authorization', 'Bearer x'], 200, ['cache-control', 's-maxage=9'], 0, { store: true, lifetime: 9000 }],
    ['404 with default_ttl', [], 404, [], 1000, { store: true, lifetime: 1000 }],
    ['302 only with an explicit lifetime', [], 302, [], 1000, { store: false, reason: 'status 302' }],
    ['302 with max-age', [], 302, ['cache-control', 'max-age=10'], 0, { store: true, lifetime: 10_000 }],
    ['500 never', [], 500, ['cache-control', 'max-age=10'], 0, { store: false, reason: 'status 500' }],
    ['206 never (ranges are not cached)', [], 206, ['cache-control', 'max-age=10'], 0, { store: false, reason: 'status 206' }],
    ['a max-age that is not digits counts as 0', [], 200, ['cache-control', 'max-age=abc', 'etag', '"v"'], 0, { store: true, lifetime: 0 }],
    ['quoted and spaced directives', [], 200, ['cache-control', ' Public , MAX-AGE="20" '], 0, { store: true, lifetime: 20_000 }],
  ];
  for (const [name, request, status, headers, ttl, expected] of cases) t.deepEqual(storability(request, status, headers, ttl), expected, name);
});

test('age (RFC 9111 §4.2.3) and how a stored response may answer at a given time', (t) => {
  const times = { requestTime: AT + 1000, responseTime: AT + 2000 };
  // The response was generated at AT (Date), with Age: 3 from an upstream cache.
  const headers = ['date', DATE, 'age', '3'];
  t.is(currentAge(headers, times, AT + 2000), 4000, 'corrected age: Age + the response delay beats the apparent age');
  t.is(currentAge(['date', DATE], times, AT + 10_000), 10_000, 'apparent age + resident time');
  const plain = requestDirectives([]);
  t.is(usability(['date', DATE], times, 60_000, plain, AT + 59_000), 'fresh');
  t.is(usability(['date', DATE], times, 60_000, plain, AT + 60_000), 'stale');
  t.is(usability(['date', DATE], times, 60_000, requestDirectives(['cache-control', 'no-cache']), AT + 5000), 'stale', 'request no-cache');
  t.is(usability(['date', DATE], times, 60_000, requestDirectives(['pragma', 'no-cache']), AT + 5000), 'stale', 'Pragma: no-cache');
  t.is(usability(['date', DATE], times, 60_000, requestDirectives(['cache-control', 'max-age=4']), AT + 5000), 'stale', 'older than the request accepts');
  const swr = ['date', DATE, 'cache-control', 'max-age=60, stale-while-revalidate=30'];
  t.is(usability(swr, times, 60_000, plain, AT + 80_000), 'stale-while-revalidate');
  t.is(usability(swr, times, 60_000, plain, AT + 95_000), 'stale');
  t.is(usability([...swr, 'cache-control', 'must-revalidate'], times, 60_000, plain, AT + 80_000), 'stale', 'must-revalidate wins');
  t.is(usability([...swr, 'cache-control', 's-maxage=60'], times, 60_000, plain, AT + 80_000), 'stale', 's-maxage implies proxy-revalidate');
  t.is(usability(swr, times, 60_000, requestDirectives(['cache-control', 'max-age=70']), AT + 80_000), 'stale', 'older than the request accepts, even within stale-while-revalidate');
  const sie = ['date', DATE, 'cache-control', 'max-age=60, stale-if-error=30'];
  t.true(usableOnError(sie, times, 60_000, AT + 80_000));
  t.false(usableOnError(sie, times, 60_000, AT + 95_000));
  t.false(usableOnError(['date', DATE, 'cache-control', 'max-age=60, stale-if-error=30, proxy-revalidate'], times, 60_000, AT + 80_000));
  t.false(usableOnError(['date', DATE, 'cache-control', 'no-cache, stale-if-error=30'], times, 0, AT + 10_000), 'no-cache: never served without revalidation');
});

test('variants, conditional requests, 304 refreshes and keys', (t) => {
  t.deepEqual(varyNames(['vary', 'Accept-Encoding, accept-language', 'vary', 'ACCEPT-ENCODING']), ['accept-encoding', 'accept-language']);
  t.is(varyNames(['vary', '*']), '*');
  t.deepEqual(varyValues(['accept-encoding'], ['accept-encoding', 'gzip,  br']), varyValues(['accept-encoding'], ['accept-encoding', 'gzip', 'accept-encoding', 'br']), 'whitespace and duplicates normalised');
  t.notDeepEqual(varyValues(['accept-encoding'], []), varyValues(['accept-encoding'], ['accept-encoding', '']), 'absent is not empty');
  const stored = ['etag', '"abc"', 'last-modified', DATE];
  const cases: [string, string[], boolean][] = [
    ['If-None-Match, same tag', ['if-none-match', '"abc"'], true],
    ['If-None-Match, weak comparison', ['if-none-match', 'W/"abc"'], true],
    ['If-None-Match, a list', ['if-none-match', '"x", "abc"'], true],
    ['If-None-Match: *', ['if-none-match', '*'], true],
    ['If-None-Match, another tag', ['if-none-match', '"x"'], false],
    ['If-None-Match wins over If-Modified-Since', ['if-none-match', '"x"', 'if-modified-since', 'Tue, 01 Dec 2026 11:00:00 GMT'], false],
    ['If-Modified-Since, later', ['if-modified-since', 'Tue, 01 Dec 2026 11:00:00 GMT'], true],
    ['If-Modified-Since, earlier', ['if-modified-since', 'Tue, 01 Dec 2026 09:00:00 GMT'], false],
    ['If-Modified-Since, not a date', ['if-modified-since', 'yesterday'], false],
  ];
  for (const [name, request, expected] of cases) t.is(notModified(request, 200, stored), expected, name);
  t.false(notModified(['if-none-match', '"abc"'], 404, stored), 'conditions apply only to a 2xx answer');
  t.deepEqual(
    refreshedHeaders(['content-type', 'text/plain', 'etag', '"a"', 'cache-control', 'max-age=1', 'content-length', '5'], ['etag', '"a"', 'cache-control', 'max-age=60', 'content-length', '0', 'x-new', '1']),
    ['content-type', 'text/plain', 'content-length', '5', 'etag', '"a"', 'cache-control', 'max-age=60', 'x-new', '1'],
    "the 304's fields replace the stored ones, Content-Length aside",
  );
  t.deepEqual(
    refreshedHeaders(['etag', '"a"', 'age', '3500'], ['etag', '"a"', 'set-cookie', 'sid=alice', 'age', '2']),
    ['etag', '"a"', 'age', '2'],
    "the 304's Age replaces the stored one; its Set-Cookie is never stored",
  );
  t.deepEqual(refreshedHeaders(['etag', '"a"', 'age', '3500'], ['etag', '"a"']), ['etag', '"a"'], 'a 304 without Age: the stored Age goes');
  t.is(cacheKey(['method', 'host', 'path', 'query'], 'HEAD', 'Shop.Example:8080', '/a/b?x=1&y=2'), 'GET shop.example:8080 /a/b ?x=1&y=2');
  t.is(cacheKey(['host', 'path'], 'GET', 'shop.example', '/a?x=1'), 'shop.example /a');
});
