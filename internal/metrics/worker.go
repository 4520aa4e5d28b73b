// Package metrics exposes wxacode's Prometheus metrics: the counters a
// worker keeps about its calls and scenes (Worker), the fleet's campaigns
// and queues read from Redis at each scrape (FleetCollector), and the HTTP
// handlers that serve them (Handler, Healthz).
//
// No metric carries a secret: labels are appids, campaign names, queue
// names and errcodes.
package metrics

import (
	"github.com/wxacode/wxacode/worker"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Errcodes of WeChat's minute limits, counted apart by Called.
const (
	codeFrequencyLimit = 45009
	codeMinuteQuota    = 45011
)

// Worker counts one worker's calls, waits and scenes. It implements the
// worker package's Observer interface and is safe for concurrent use.
type Worker struct {
	calls          *prometheus.CounterVec
	callDuration   *prometheus.HistogramVec
	waitTotal      *prometheus.CounterVec
	waits          *prometheus.HistogramVec
	rateLimited    *prometheus.CounterVec
	stored         *prometheus.CounterVec
	failed         *prometheus.CounterVec
	tokenRefreshes *prometheus.CounterVec
}

// NewWorker returns a Worker whose metrics are registered on reg (not
// registered when reg is nil). Registering twice on one registry panics,
// as prometheus.MustRegister does.
func NewWorker(reg prometheus.Registerer) *Worker {
	f := promauto.With(reg)
	return &Worker{
		calls: f.NewCounterVec(prometheus.CounterOpts{
			Name: "wxacode_calls_total",
			Help: "Calls of WeChat interface B by appid, errcode (0: an image; empty: no errcode came back) and error class (none: an image; see worker.Class).",
		}, []string{"appid", "errcode", "class"}),
		callDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wxacode_call_duration_seconds",
			Help:    "Latency of calls of WeChat interface B, whatever their answer.",
			Buckets: []float64{.005, .01, .025, .05, .1, .2, .3, .5, .75, 1, 2, 5},
		}, []string{"appid"}),
		waitTotal: f.NewCounterVec(prometheus.CounterOpts{
			Name: "wxacode_ceiling_wait_seconds_total",
			Help: "Time spent waiting for a slot under the app's fleet-wide ceiling.",
		}, []string{"appid"}),
		waits: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wxacode_ceiling_wait_seconds",
			Help:    "Waits for a slot under the app's fleet-wide ceiling.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60},
		}, []string{"appid"}),
		rateLimited: f.NewCounterVec(prometheus.CounterOpts{
			Name: "wxacode_rate_limited_total",
			Help: "Calls WeChat answered with a minute limit (45009 or 45011).",
		}, []string{"appid"}),
		stored: f.NewCounterVec(prometheus.CounterOpts{
			Name: "wxacode_codes_stored_total",
			Help: "Scenes whose code was stored, by campaign.",
		}, []string{"campaign"}),
		failed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "wxacode_codes_failed_total",
			Help: "Scenes that failed, by campaign and errcode (0: a failure without one).",
		}, []string{"campaign", "errcode"}),
		tokenRefreshes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "wxacode_token_refreshes_total",
			Help: "Access tokens fetched from WeChat or the token service, by appid.",
		}, []string{"appid"}),
	}
}

// Called records one call of interface B: its latency, its WeChat errcode
// (0 when none) and the class of its error (worker.ClassNone for an image).
func (w *Worker) Called(app string, latency time.Duration, errcode int, class worker.Class) {
	code := strconv.Itoa(errcode)
	if errcode == 0 && class != worker.ClassNone {
		code = "" // no errcode came back
	}
	w.calls.WithLabelValues(app, code, class.String()).Inc()
	w.callDuration.WithLabelValues(app).Observe(latency.Seconds())
	if errcode == codeFrequencyLimit || errcode == codeMinuteQuota {
		w.rateLimited.WithLabelValues(app).Inc()
	}
}

// Waited records time spent waiting on the ceiling.
func (w *Worker) Waited(app string, d time.Duration) {
	w.waitTotal.WithLabelValues(app).Add(max(d.Seconds(), 0))
	w.waits.WithLabelValues(app).Observe(d.Seconds())
}

// Stored records a scene whose code was stored.
func (w *Worker) Stored(campaign string) { w.stored.WithLabelValues(campaign).Inc() }

// Failed records a scene that failed with errcode.
func (w *Worker) Failed(campaign string, errcode int) {
	w.failed.WithLabelValues(campaign, strconv.Itoa(errcode)).Inc()
}

// TokenRefreshed records an access token fetched for app.
func (w *Worker) TokenRefreshed(app string) { w.tokenRefreshes.WithLabelValues(app).Inc() }
