/*
 * The Likewise pixel: TikTok's `ttq` interface, sending a page's events to a Likewise server.
 *
 *   ttq.load('CXXXX', {endpoint?}) · ttq.page() · ttq.track(event, properties?, {event_id?})
 *   ttq.identify({email, phone_number, external_id}) · ttq.holdConsent() / grantConsent() /
 *   revokeConsent() · ttq.enableCookie() / disableCookie() · ttq.instance(code)
 *
 * Invariants: identifiers are SHA-256 hashed here, in the browser, before anything is sent (the
 * collector refuses anything else); no request and no cookie while consent is held or revoked.
 * No dependencies, no build step, no network besides the collector.
 */
(function (window, document) {
  'use strict';

  var existing = window.ttq;
  if (existing && existing._likewise) return; // included twice: the first copy already runs

  var FLUSH_MS = 500; // short enough to feel live, long enough to batch a page's burst of events
  var RETRY_MS = 2000;
  var MAX_BATCH = 20; // the collector takes 50 per request; keep beacons well under 64 KB
  var TTP_DAYS = 395; // 13 months, as TikTok's _ttp
  var TTCLID_DAYS = 7;
  var HEX64 = /^[0-9a-f]{64}$/i;
  var EMAIL_LIKE = /[^\s@]+@[^\s@]+\.[^\s@]+/;

  // The collector is on the server this script came from, unless load() names another. Read
  // currentScript now: it is null once this first run is over.
  var here = document.currentScript;
  var scriptSrc = here && here.src;
  if (!scriptSrc) {
    var tags = document.getElementsByTagName('script');
    for (var i = 0; i < tags.length; i++) {
      if (/\/pixel\/v1\/ttq\.js(\?|$)/.test(tags[i].src)) scriptSrc = tags[i].src;
    }
  }

  var pixels = []; // {code, endpoint, queue: [events]}
  var early = []; // events tracked before the first load(): they go to the first pixel loaded
  var identity = {}; // hashed match keys, attached to every later event
  var consent = 'granted'; // 'granted' | 'held' | 'revoked'
  var epoch = 0; // bumped by revokeConsent(): events tracked before it are never sent
  var cookies = true;
  var debug = false;
  var timer = null;
  var chain = Promise.resolve(); // keeps identify() hashing and later events in call order
  var ttclid = new URLSearchParams(window.location.search).get('ttclid') || null;

  function log() {
    if (!debug || !window.console) return;
    console.log.apply(console, ['[likewise ttq]'].concat([].slice.call(arguments)));
  }

  // --- cookies (first-party, on the shop's own domain) ----------------------------------------

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split('; ') : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf('=');
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function writeCookie(name, value, days) {
    var secure = window.location.protocol === 'https:' ? '; Secure' : '';
    document.cookie = name + '=' + encodeURIComponent(value) + '; Max-Age=' + days * 86400 +
      '; Path=/; SameSite=Lax' + secure;
  }

  function deleteCookie(name) {
    document.cookie = name + '=; Max-Age=0; Path=/; SameSite=Lax';
  }

  function randomId() {
    var bytes = new Uint8Array(18); // 144 random bits, 24 URL-safe characters
    crypto.getRandomValues(bytes);
    return btoa(String.fromCharCode.apply(null, bytes)).replace(/\+/g, '-').replace(/\//g, '_');
  }

  // Called only when something is about to be sent, so a held or revoked consent never leaves a
  // cookie behind (and a load() that runs before a queued holdConsent() sets none either).
  function browserKeys() {
    if (!cookies || consent !== 'granted') return {ttp: null, ttclid: ttclid};
    var ttp = readCookie('_ttp');
    if (!ttp) writeCookie('_ttp', (ttp = randomId()), TTP_DAYS);
    if (ttclid) writeCookie('ttclid', ttclid, TTCLID_DAYS);
    return {ttp: ttp, ttclid: ttclid || readCookie('ttclid')};
  }

  // --- advanced matching: normalise and hash in the browser ---------------------------------

  var NORMALISE = {
    email: function (v) { return v.trim().toLowerCase(); },
    phone_number: function (v) { // "+1 (415) 555-0100" -> "+14155550100"
      v = v.trim();
      return (v.charAt(0) === '+' ? '+' : '') + v.replace(/\D/g, '');
    },
    external_id: function (v) { return v.trim(); }
  };

  function sha256(value) {
    if (HEX64.test(value.trim())) return Promise.resolve(value.trim().toLowerCase()); // already hashed
    if (!window.crypto || !crypto.subtle) {
      // Web Crypto exists only on secure pages (https, localhost): without it the value is
      // dropped, never sent raw.
      log('no Web Crypto on this page: identity not sent');
      return Promise.resolve(null);
    }
    return crypto.subtle.digest('SHA-256', new TextEncoder().encode(value)).then(function (buf) {
      return Array.from(new Uint8Array(buf), function (b) {
        return (b < 16 ? '0' : '') + b.toString(16);
      }).join('');
    });
  }

  function identify(user) {
    user = user || {};
    chain = chain.then(function () {
      return Promise.all(Object.keys(NORMALISE).map(function (key) {
        var raw = user[key];
        if (typeof raw === 'number') raw = String(raw);
        if (typeof raw !== 'string') return null;
        var value = HEX64.test(raw.trim()) ? raw : NORMALISE[key](raw);
        if (!value) return null;
        return sha256(value).then(function (hash) { if (hash) identity[key] = hash; });
      }));
    }).catch(function (err) { log('identify failed', err); });
  }

  // --- events ---------------------------------------------------------------------------------

  // Query values that look like an e-mail address are dropped from URLs: a form submitted with
  // GET must not carry a raw address to the collector inside page.url or page.referrer.
  function safeUrl(url) {
    if (!url) return url;
    try {
      var u = new URL(url);
      var drop = [];
      u.searchParams.forEach(function (v, k) { if (EMAIL_LIKE.test(v)) drop.push(k); });
      drop.forEach(function (k) { u.searchParams.delete(k); });
      // Anywhere else (path, fragment): keep only what is surely safe.
      return EMAIL_LIKE.test(u.href) ? u.origin + u.pathname.replace(/[^\s@\/]+@[^\s@\/]+/g, '') : u.href;
    } catch (e) {
      return undefined;
    }
  }

  function track(name, properties, options, only) {
    if (typeof name !== 'string' || !name) return log('track() needs an event name');
    if (consent === 'revoked') return log('consent revoked: dropped', name);
    var event = {
      event: name,
      timestamp: new Date().toISOString(),
      properties: properties || undefined,
      page: {url: safeUrl(window.location.href), referrer: safeUrl(document.referrer) || undefined}
    };
    if (options && options.event_id) event.event_id = String(options.event_id);
    var at = epoch;
    // Behind any identify() still hashing, so the event carries the identity set before it.
    chain = chain.then(function () {
      if (at !== epoch) return; // revoked meanwhile
      if (Object.keys(identity).length) event.user = Object.assign({}, identity);
      var targets = only ? pixels.filter(function (p) { return p.code === only; }) : pixels;
      if (!pixels.length) early.push(event);
      targets.forEach(function (p) { p.queue.push(event); });
      schedule();
    });
  }

  function schedule() {
    if (timer === null && consent === 'granted') timer = setTimeout(flush, FLUSH_MS);
  }

  // Sends every queued event. `leaving`: the page is going away, so use sendBeacon (or a
  // keepalive fetch), which outlive the page but tell nothing back.
  function flush(leaving) {
    clearTimeout(timer);
    timer = null;
    if (consent !== 'granted') return;
    var keys = browserKeys();
    pixels.forEach(function (p) {
      while (p.queue.length) {
        var batch = p.queue.splice(0, MAX_BATCH).map(function (e) {
          return Object.assign({}, e, {ttp: keys.ttp || undefined, ttclid: keys.ttclid || undefined});
        });
        var body = JSON.stringify({pixel_code: p.code, events: batch});
        if (leaving === true) beacon(p.endpoint, body);
        else post(p.endpoint, body, 0);
      }
    });
  }

  function beacon(url, body) {
    // text/plain is a CORS "simple" type: no preflight, which a closing page might not wait for.
    if (navigator.sendBeacon && navigator.sendBeacon(url, new Blob([body], {type: 'text/plain'}))) return;
    fetch(url, {method: 'POST', body: body, keepalive: true, credentials: 'omit'}).catch(function () {});
  }

  function post(url, body, attempt) {
    fetch(url, {method: 'POST', body: body, credentials: 'omit'}) // string body: text/plain
      .then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      })
      .then(function (answer) {
        // A refusal (4xxxx) would be refused again: report it, do not retry it.
        if (answer.code >= 50000) throw new Error(answer.message);
        if (answer.code !== 0) log('refused', answer.code, answer.message);
        else log('sent', body);
      })
      .catch(function (err) {
        log('send failed', err);
        if (attempt === 0) setTimeout(function () { post(url, body, 1); }, RETRY_MS);
      });
  }

  // --- consent --------------------------------------------------------------------------------

  function holdConsent() {
    consent = 'held'; // events wait in their queues; nothing is sent, no cookie written
    clearTimeout(timer);
    timer = null;
  }

  function grantConsent() {
    consent = 'granted';
    browserKeys(); // the cookies exist from now on
    flush();
  }

  function revokeConsent() {
    consent = 'revoked';
    epoch++;
    clearTimeout(timer);
    timer = null;
    early = [];
    pixels.forEach(function (p) { p.queue = []; });
    deleteCookie('_ttp');
    deleteCookie('ttclid');
  }

  // --- load and the public object ------------------------------------------------------------

  function load(code, options) {
    if (typeof code !== 'string' || !code.trim()) return log('load() needs a pixel code');
    code = code.trim();
    if (pixels.some(function (p) { return p.code === code; })) return;
    options = options || {};
    var endpoint = options.endpoint ||
      (scriptSrc ? new URL(scriptSrc, window.location.href).origin + '/pixel/v1/collect' : null);
    if (!endpoint) return log('no collector: pass load(code, {endpoint})');
    var pixel = {code: code, endpoint: endpoint, queue: early};
    early = [];
    pixels.push(pixel);
    if (pixel.queue.length) schedule();
  }

  function noop() { return ttq; }

  function instance(code) {
    return {
      page: function () { track('Pageview', undefined, undefined, code); },
      track: function (name, properties, options) { track(name, properties, options, code); },
      identify: identify
    };
  }

  // TikTok's base code makes window.ttq an array with stub methods that push calls; the page
  // may have kept a reference to it, so the real methods go onto that same object.
  var ttq = existing || [];
  var calls = Array.isArray(existing) ? existing.splice(0, existing.length) : [];
  var api = {
    _likewise: true,
    load: load,
    page: function () { track('Pageview'); },
    track: function (name, properties, options) { track(name, properties, options); },
    identify: identify,
    holdConsent: holdConsent,
    grantConsent: grantConsent,
    revokeConsent: revokeConsent,
    enableCookie: function () { cookies = true; },
    disableCookie: function () { cookies = false; deleteCookie('_ttp'); deleteCookie('ttclid'); },
    debug: function (on) { debug = on !== false; },
    instance: instance,
    instances: function () { return pixels.map(function (p) { return instance(p.code); }); },
    ready: function (fn) { if (typeof fn === 'function') setTimeout(fn, 0); },
    // Accepted so pages written for TikTok's pixel keep working; Likewise has no use for them.
    on: noop, off: noop, once: noop, alias: noop, group: noop
  };
  Object.keys(api).forEach(function (name) { ttq[name] = api[name]; });
  window.ttq = ttq;

  // Replay what the page asked for before this script arrived: first the pixels TikTok's loader
  // recorded (ttq._i, options in ttq._o), then the queued calls in order, then per-instance ones.
  var recorded = (existing && existing._i) || {};
  Object.keys(recorded).forEach(function (code) { load(code, (existing._o || {})[code]); });
  calls.forEach(function (call) {
    var fn = api[call[0]];
    if (typeof fn === 'function') fn.apply(ttq, call.slice(1));
  });
  Object.keys(recorded).forEach(function (code) {
    var scoped = instance(code);
    (recorded[code] || []).splice(0).forEach(function (call) {
      var fn = scoped[call[0]] || api[call[0]];
      if (typeof fn === 'function') fn.apply(scoped, call.slice(1));
    });
  });

  // The page is going away (or to the background, where it may never come back): send now.
  window.addEventListener('pagehide', function () { flush(true); });
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'hidden') flush(true);
  });
})(window, document);
