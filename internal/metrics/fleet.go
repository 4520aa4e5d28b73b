package metrics

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wxacode/wxacode/campaign"
)

var (
	campaignScenesDesc = prometheus.NewDesc("wxacode_campaign_scenes",
		"Scenes of a campaign by status: succeeded, failed or pending.",
		[]string{"campaign", "appid", "status"}, nil)
	// A gauge: not named _total, which Prometheus keeps for counters.
	campaignTotalDesc = prometheus.NewDesc("wxacode_campaign_distinct_scenes",
		"Distinct scenes of a campaign (succeeded, failed and pending together).",
		[]string{"campaign", "appid"}, nil)
	queueTasksDesc = prometheus.NewDesc("wxacode_queue_tasks",
		"Batch tasks in an asynq queue by state.",
		[]string{"queue", "state"}, nil)
	queueLatencyDesc = prometheus.NewDesc("wxacode_queue_latency_seconds",
		"Age of the oldest pending task of an asynq queue.",
		[]string{"queue"}, nil)
	queuePausedDesc = prometheus.NewDesc("wxacode_queue_paused",
		"1 when an asynq queue is paused.",
		[]string{"queue"}, nil)
	appWorkersDesc = prometheus.NewDesc("wxacode_app_workers",
		"Live workers that serve an app, for every app a campaign names or a worker serves.",
		[]string{"appid"}, nil)
	campaignUnservedDesc = prometheus.NewDesc("wxacode_campaign_unserved",
		"1 when a campaign has scenes to make and no live worker serves its app.",
		[]string{"campaign", "appid"}, nil)
	scrapeErrorDesc = prometheus.NewDesc("wxacode_scrape_error",
		"1 when the last scrape could not read a source (campaigns or queues) from Redis; its metrics are then missing.",
		[]string{"source"}, nil)
)

// FleetCollector reports the whole fleet's campaigns and queues, read from
// Redis at each scrape: every campaign's scenes by status and every asynq
// queue's tasks by state. It is a prometheus.Collector, safe for concurrent
// scrapes.
//
// A source that cannot be read is reported as wxacode_scrape_error{source}
// = 1 (and logged), with the other source's metrics still served: a scrape
// never fails as a whole and never panics.
type FleetCollector struct {
	store   *campaign.Store
	insp    *asynq.Inspector
	timeout time.Duration
	log     zerolog.Logger
}

// NewFleetCollector returns a collector of the campaigns in store and the
// queues insp sees. timeout bounds the campaign reads of one scrape
// (default 5s when 0); the queue reads are bounded by the timeouts of the
// inspector's Redis client, since asynq's Inspector takes no context.
func NewFleetCollector(store *campaign.Store, insp *asynq.Inspector, timeout time.Duration) *FleetCollector {
	return &FleetCollector{store: store, insp: insp, timeout: cmp.Or(timeout, 5*time.Second), log: zerolog.Nop()}
}

// WithLogger makes the collector log scrape errors to log. Call it before
// registering the collector.
func (c *FleetCollector) WithLogger(log zerolog.Logger) *FleetCollector {
	c.log = log
	return c
}

// Describe sends the descriptors of every metric the collector reports.
func (c *FleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{campaignScenesDesc, campaignTotalDesc, campaignUnservedDesc, appWorkersDesc, queueTasksDesc, queueLatencyDesc, queuePausedDesc, scrapeErrorDesc} {
		ch <- d
	}
}

// Collect reads the campaigns and queues and sends their metrics.
func (c *FleetCollector) Collect(ch chan<- prometheus.Metric) {
	// prometheus.Collector carries no context: the scrape's deadline
	// starts here.
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.report(ch, "campaigns", c.collectCampaigns(ctx, ch))
	c.report(ch, "queues", c.collectQueues(ch))
}

func (c *FleetCollector) report(ch chan<- prometheus.Metric, source string, err error) {
	v := 0.0
	if err != nil {
		v = 1
		c.log.Warn().Err(err).Str("source", source).Msg("metrics scrape")
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, v, source)
}

func (c *FleetCollector) collectCampaigns(ctx context.Context, ch chan<- prometheus.Metric) error {
	cs, err := c.store.List(ctx)
	if err != nil {
		return err
	}
	served, err := c.store.Served(ctx)
	if err != nil {
		return err
	}
	apps := maps.Clone(served)
	for _, cp := range cs {
		apps[cp.AppID] = served[cp.AppID]
		unserved := 0.0
		if campaign.StatusOf(cp, nil).WithWorkers(served).Unserved {
			unserved = 1
		}
		c.send(ch, campaignUnservedDesc, unserved, cp.Name, cp.AppID)
		for _, s := range []struct {
			status string
			n      int64
		}{
			{string(campaign.Succeeded), cp.Succeeded},
			{string(campaign.Failed), cp.Failed},
			{string(campaign.Pending), cp.Pending()},
		} {
			c.send(ch, campaignScenesDesc, float64(s.n), cp.Name, cp.AppID, s.status)
		}
		c.send(ch, campaignTotalDesc, float64(cp.Total), cp.Name, cp.AppID)
	}
	for app, n := range apps {
		c.send(ch, appWorkersDesc, float64(n), app)
	}
	return nil
}

// send sends one gauge. A label value Prometheus refuses (not UTF-8: a
// record written around the commands' checks) drops that series alone,
// with a log line, instead of panicking the scrape and losing every series.
func (c *FleetCollector) send(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...)
	if err != nil {
		c.log.Warn().Err(err).Msg("metrics scrape: series dropped")
		return
	}
	ch <- m
}

func (c *FleetCollector) collectQueues(ch chan<- prometheus.Metric) error {
	existing, err := c.insp.Queues()
	if err != nil {
		return err
	}
	queues := slices.Sorted(slices.Values(existing))
	var firstErr error
	for _, q := range queues {
		info, err := c.insp.GetQueueInfo(q)
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		for _, s := range []struct {
			state string
			n     int
		}{
			{"pending", info.Pending},
			{"active", info.Active},
			{"scheduled", info.Scheduled},
			{"retry", info.Retry},
			{"archived", info.Archived},
			{"completed", info.Completed},
		} {
			c.send(ch, queueTasksDesc, float64(s.n), q, s.state)
		}
		c.send(ch, queueLatencyDesc, info.Latency.Seconds(), q)
		paused := 0.0
		if info.Paused {
			paused = 1
		}
		c.send(ch, queuePausedDesc, paused, q)
	}
	return firstErr
}
