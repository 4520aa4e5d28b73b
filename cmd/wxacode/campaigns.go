package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/internal/imagetype"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/storage"
)

func init() {
	commands = append(commands, statusCommand, exportCommand, retryCommand, cancelCommand)
}

// statusJSON is one campaign in `status --json`.
type statusJSON struct {
	Campaign   string    `json:"campaign"`
	AppID      string    `json:"appid"`
	Page       string    `json:"page"`
	State      string    `json:"state"`
	Total      int64     `json:"total"`
	Succeeded  int64     `json:"succeeded"`
	Failed     int64     `json:"failed"`
	Pending    int64     `json:"pending"`
	Done       bool      `json:"done"`
	Rate       float64   `json:"rate_per_second"`
	ETASeconds float64   `json:"eta_seconds"`
	Created    time.Time `json:"created"`
}

func toStatus(c campaign.Campaign) statusJSON {
	s := statusJSON{
		Campaign: c.Name, AppID: c.AppID, Page: c.Options.Page, State: string(c.State),
		Total: c.Total, Succeeded: c.Succeeded, Failed: c.Failed, Pending: c.Pending(),
		Done: c.Done(), Rate: c.Rate(), Created: c.Created,
	}
	if s.Rate > 0 && !s.Done {
		s.ETASeconds = float64(s.Pending) / s.Rate
	}
	return s
}

func statusCommand(a *app) *cobra.Command {
	var (
		redisURL    string
		asJSON      bool
		watch       bool
		interval    time.Duration
		campaignArg string
	)
	cmd := &cobra.Command{
		Use:   "status [CAMPAIGN]",
		Short: "Show campaigns' progress",
		Long: `Show the progress of one campaign, or of every campaign: scenes succeeded,
failed and pending, the rate and the time left.

--json prints one object per campaign (a single object when a campaign is
named, an array otherwise) with campaign, appid, total, succeeded, failed,
pending and done (true when succeeded + failed == total). --watch redraws
until the campaign is done (Ctrl-C to stop).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				campaignArg = args[0]
			}
			ctx := cmd.Context()
			rdb, store, err := openStore(ctx, redisURL)
			if err != nil {
				return err
			}
			defer rdb.Close()
			if !watch {
				return a.printStatus(ctx, store, campaignArg, asJSON)
			}
			return a.watchStatus(ctx, store, campaignArg, asJSON, interval)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&asJSON, "json", false, "machine-readable output")
	fs.BoolVar(&watch, "watch", false, "redraw until done")
	fs.DurationVar(&interval, "interval", time.Second, "how often --watch redraws")
	a.redisFlag(fs, &redisURL)
	return cmd
}

func (a *app) loadStatus(ctx context.Context, store *campaign.Store, name string) ([]campaign.Campaign, error) {
	if name != "" {
		c, err := getCampaign(ctx, store, name)
		return []campaign.Campaign{c}, err
	}
	return store.List(ctx)
}

func (a *app) printStatus(ctx context.Context, store *campaign.Store, name string, asJSON bool) error {
	cs, err := a.loadStatus(ctx, store, name)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		if name != "" {
			return enc.Encode(toStatus(cs[0]))
		}
		out := make([]statusJSON, len(cs))
		for i, c := range cs {
			out[i] = toStatus(c)
		}
		return enc.Encode(out)
	}
	if len(cs) == 0 {
		fmt.Fprintln(a.stdout, "no campaigns")
	}
	for _, c := range cs {
		fmt.Fprintln(a.stdout, statusLine(c, c.Rate()))
	}
	return nil
}

func statusLine(c campaign.Campaign, rate float64) string {
	s := fmt.Sprintf("%-20s %s  ok %d  failed %d  pending %d  %s", c.Name, bar(c.Succeeded+c.Failed, c.Total, 30), c.Succeeded, c.Failed, c.Pending(), c.State)
	if c.Done() {
		return s + "  done"
	}
	if rate > 0 {
		s += fmt.Sprintf("  %.1f/s  ETA %s", rate, formatETA(time.Duration(float64(c.Pending())/rate*float64(time.Second))))
	}
	return s
}

func (a *app) watchStatus(ctx context.Context, store *campaign.Store, name string, asJSON bool, interval time.Duration) error {
	if interval <= 0 {
		return usagef("--interval %s: must be positive", interval)
	}
	tty := isTerminal(a.stdout) && !asJSON
	line := &liveLine{w: a.stdout}
	type sample struct {
		at   time.Time
		done int64
	}
	last := map[string]sample{}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		cs, err := a.loadStatus(ctx, store, name)
		if err != nil {
			return err
		}
		now := time.Now()
		allDone := len(cs) > 0
		var text string
		for i, c := range cs {
			rate := c.Rate()
			if p, ok := last[c.Name]; ok && now.After(p.at) {
				rate = float64(c.Succeeded+c.Failed-p.done) / now.Sub(p.at).Seconds()
			}
			last[c.Name] = sample{now, c.Succeeded + c.Failed}
			allDone = allDone && (c.Done() || c.State == campaign.StateCancelled)
			if asJSON {
				st := toStatus(c)
				st.Rate = rate
				b, _ := json.Marshal(st)
				fmt.Fprintln(a.stdout, string(b))
				continue
			}
			if i > 0 {
				text += "\n"
			}
			text += statusLine(c, rate)
		}
		if !asJSON {
			if tty && len(cs) == 1 {
				line.draw(text, true)
			} else {
				fmt.Fprintln(a.stdout, text)
			}
		}
		if allDone {
			if tty && len(cs) == 1 {
				line.end()
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if tty && len(cs) == 1 {
				line.end()
			}
			return nil
		case <-t.C:
		}
	}
}

// exportRow is one row of `export`.
type exportRow struct {
	Scene       string `json:"scene"`
	Status      string `json:"status"`
	Key         string `json:"key"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	ErrCode     int    `json:"errcode"`
	Error       string `json:"error"`
}

func exportCommand(a *app) *cobra.Command {
	var redisURL, format string
	cmd := &cobra.Command{
		Use:   "export CAMPAIGN",
		Short: "List every scene of a campaign with its key and status",
		Long: `List every scene of a campaign, one row each: scene, status (succeeded,
failed or pending), key (the object key, prefix included), content_type, size
(bytes), sha256 (lowercase hex of the stored bytes), errcode (0 when none) and
error. CSV with a header line, or JSON lines with --format jsonl.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "csv" && format != "jsonl" {
				return usagef("--format %q: want csv or jsonl", format)
			}
			ctx := cmd.Context()
			rdb, store, err := openStore(ctx, redisURL)
			if err != nil {
				return err
			}
			defer rdb.Close()
			c, err := getCampaign(ctx, store, args[0])
			if err != nil {
				return err
			}
			return exportCampaign(ctx, store, c, format, a.stdout)
		},
	}
	cmd.Flags().StringVar(&format, "format", "csv", "csv or jsonl")
	a.redisFlag(cmd.Flags(), &redisURL)
	return cmd
}

func exportCampaign(ctx context.Context, store *campaign.Store, c campaign.Campaign, format string, w io.Writer) error {
	var (
		cw  *csv.Writer
		enc *json.Encoder
	)
	if format == "csv" {
		cw = csv.NewWriter(w)
		if err := cw.Write([]string{"scene", "status", "key", "content_type", "size", "sha256", "errcode", "error"}); err != nil {
			return err
		}
	} else {
		enc = json.NewEncoder(w)
		enc.SetEscapeHTML(false)
	}
	err := store.Export(ctx, c.Name, func(r campaign.Row) error {
		row := exportRow{Scene: r.Scene, Status: string(r.Status), ErrCode: r.ErrCode, Error: r.Error}
		if r.Status == campaign.Succeeded {
			row.Key = c.KeyPrefix + storage.Key(c.Name, r.Scene, imagetype.Ext(r.Result.ContentType))
			row.ContentType, row.Size, row.SHA256 = r.Result.ContentType, r.Result.Size, r.Result.SHA256
		}
		if cw != nil {
			return cw.Write([]string{row.Scene, row.Status, row.Key, row.ContentType, strconv.FormatInt(row.Size, 10), row.SHA256, strconv.Itoa(row.ErrCode), row.Error})
		}
		return enc.Encode(row)
	})
	if cw != nil {
		cw.Flush()
		if err == nil {
			err = cw.Error()
		}
	}
	return err
}

func retryCommand(a *app) *cobra.Command {
	var redisURL string
	cmd := &cobra.Command{
		Use:   "retry CAMPAIGN",
		Short: "Enqueue a campaign's failed scenes again",
		Long: `Turn every failed scene of a campaign back to pending and enqueue the
batches that hold them (for example after the page was published). A cancelled
campaign is resumed: its pending scenes are enqueued too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			rdb, store, err := openStore(ctx, redisURL)
			if err != nil {
				return err
			}
			defer rdb.Close()
			if _, err := getCampaign(ctx, store, args[0]); err != nil {
				return err
			}
			p, err := producer.New(store, asynq.NewClientFromRedisClient(rdb), producer.Config{})
			if err != nil {
				return err
			}
			n, tasks, err := p.Retry(ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "campaign %s: %d failed scenes back to pending, %d batches enqueued\n", args[0], n, tasks)
			return nil
		},
	}
	a.redisFlag(cmd.Flags(), &redisURL)
	return cmd
}

func cancelCommand(a *app) *cobra.Command {
	var redisURL string
	cmd := &cobra.Command{
		Use:   "cancel CAMPAIGN",
		Short: "Stop a campaign's remaining work",
		Long: `Stop a campaign: workers finish the calls in flight and skip its remaining
scenes, which stay pending. What is done stays done; 'wxacode retry' resumes it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			rdb, store, err := openStore(ctx, redisURL)
			if err != nil {
				return err
			}
			defer rdb.Close()
			return a.cancelCampaign(ctx, store, args[0])
		},
	}
	a.redisFlag(cmd.Flags(), &redisURL)
	return cmd
}

func (a *app) cancelCampaign(ctx context.Context, store *campaign.Store, name string) error {
	c, err := getCampaign(ctx, store, name)
	if err != nil {
		return err
	}
	if err := store.SetState(ctx, name, campaign.StateCancelled); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "campaign %s cancelled: %d succeeded, %d failed, %d left pending\n", name, c.Succeeded, c.Failed, c.Pending())
	return nil
}

// openStore connects to Redis and returns its campaign store; the caller
// closes the client.
func openStore(ctx context.Context, redisURL string) (*redis.Client, *campaign.Store, error) {
	rdb, err := openRedis(ctx, redisURL, 0)
	if err != nil {
		return nil, nil, err
	}
	return rdb, campaign.NewStore(rdb, ""), nil
}
