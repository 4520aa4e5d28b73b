package simulator

import "time"

// LogEntry is one line of the call log, written as JSON, one per call.
// It never holds a token or a secret: the query strings of cgi-bin/token
// and the access_token of code calls are never logged.
type LogEntry struct {
	// Time is when the call arrived (Config.Now), RFC 3339 with
	// nanoseconds.
	Time time.Time `json:"time"`
	// App is the appid: the token's app for code calls, the appid asked
	// for by token calls; empty when unknown.
	App string `json:"app,omitempty"`
	// API is getwxacodeunlimit (B), getwxacode (A), createwxaqrcode (C),
	// token or stable_token.
	API string `json:"api"`
	// Scene is interface B's scene, as sent, once the body was read.
	Scene string `json:"scene,omitempty"`
	// Page is B's page, or A's and C's path.
	Page string `json:"page,omitempty"`
	// Errcode is WeChat's errcode, 0 on success (and for HTTP faults).
	Errcode int `json:"errcode"`
	// Status is the HTTP status; 0 when the connection was dropped.
	Status int `json:"status"`
	// Bytes is the length of the body sent.
	Bytes int `json:"bytes"`
	// SHA256 is the lowercase hex SHA-256 of the image sent, if any.
	SHA256 string `json:"sha256,omitempty"`
	// LatencyMS is the time spent answering, injected latency included,
	// in milliseconds.
	LatencyMS float64 `json:"latency_ms"`
	// Fault names the injected fault: busy, server_error, token_invalid,
	// dropped; canceled when the client left during injected latency.
	Fault string `json:"fault,omitempty"`
	// RID is the rid at the end of an error's errmsg.
	RID string `json:"rid,omitempty"`
}
