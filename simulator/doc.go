// Package simulator is a faithful fake of the WeChat API that wxacode
// calls, an http.Handler: access tokens and the Mini Program code
// interfaces, with WeChat's rules, errcodes and limits, real QR code
// images, settable faults and a JSON-lines call log. It serves `wxacode
// simulate`, the demo and the tests. Create one with New(Config).
//
// # Paths
//
//   - GET /cgi-bin/token?grant_type=client_credential&appid=..&secret=..:
//     a classic token. Every call issues a new one; the previous one stays
//     valid for the overlap, then answers 40001. A wrong secret is 40001,
//     an unknown appid 40013.
//   - POST /cgi-bin/stable_token {"grant_type","appid","secret","force_refresh"}:
//     in normal mode every caller gets the same token while more than the
//     overlap is left of it (expires_in is what is left); within the
//     overlap the next call issues a new one and the old one lives out its
//     natural end, so both work meanwhile. force_refresh revokes the
//     current token at once and issues a new one; a forced call within
//     30 s of the last forced refresh acts as a normal one (WeChat: "it
//     does not refresh"), and the 21st forced refresh in 24 hours answers
//     45009. A wrong secret is 40125 (invalid appsecret), as WeChat answers
//     there; an unknown appid 40013. Classic and stable tokens are apart.
//   - POST /wxa/getwxacodeunlimit?access_token=.. (interface B), POST
//     /wxa/getwxacode (A) and POST /cgi-bin/wxaapp/createwxaqrcode (C):
//     the rules are in parseCode; A and C share a lifetime quota (45029).
//
// The overlap is Overlap(lifetime): min(5 minutes, lifetime/4). Used
// tokens answer 42001 after their natural end and 40001 once revoked.
//
// # Interface B's window
//
// Every B call whose token names an app is counted at its arrival in
// that app's sliding window, whatever its answer (45009 and other errors
// included). A call that finds more than RateN calls, itself included,
// in the last RatePer answers 45009 with HTTP 200. A client that keeps
// calling while refused stays refused.
//
// # Answers
//
// Success is HTTP 200 with Content-Type image/jpeg exactly: a JFIF JPEG
// of the requested width, or, for is_hyaline, a PNG with a transparent
// background under the same label (WeChat's own label for it is
// unconfirmed; real clients compare the header to image/jpeg). The code
// is a standard QR code carrying PAGE?scene=SCENE for B (see
// DecodeContent, DecodeImage) and the path for A and C; the same request
// always gives the same bytes. Errors are HTTP 200 with
// {"errcode":N,"errmsg":"... rid: R"} labelled application/json;
// charset=utf-8 (text/plain with Config.PlainTextErrors).
//
// # Faults
//
// Latency, busy (-1), HTTP 503, token invalidation (40001, really
// revoked), dropped connections and text/plain errors are all off by
// default and drawn from a seeded generator: one draw per fault per call,
// so a seed and a sequence of calls always give the same answers.
package simulator
