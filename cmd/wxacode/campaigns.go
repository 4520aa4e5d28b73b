package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/storage"
)

func init() {
	commands = append(commands, statusCommand, exportCommand, retryCommand, cancelCommand)
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

func (a *app) loadStatus(ctx context.Context, store *campaign.Store, name string) ([]campaign.Status, error) {
	if name != "" {
		st, err := store.Status(ctx, name)
		if errors.Is(err, campaign.ErrNotFound) {
			return nil, usagef("campaign %s not found", name)
		}
		return []campaign.Status{st}, err
	}
	return store.Statuses(ctx)
}

func (a *app) printStatus(ctx context.Context, store *campaign.Store, name string, asJSON bool) error {
	cs, err := a.loadStatus(ctx, store, name)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		if name != "" {
			return enc.Encode(cs[0])
		}
		return enc.Encode(cs)
	}
	if len(cs) == 0 {
		fmt.Fprintln(a.stdout, "no campaigns")
	}
	for _, c := range cs {
		fmt.Fprintln(a.stdout, statusLine(c, c.RatePerSecond))
	}
	return nil
}

func statusLine(c campaign.Status, rate float64) string {
	s := fmt.Sprintf("%-20s %s  ok %d  failed %d  pending %d  %s", c.Campaign, bar(c.Succeeded+c.Failed, c.Total, 30), c.Succeeded, c.Failed, c.Pending, c.State)
	if c.Done {
		return s + "  done"
	}
	if c.Unserved {
		return s + "  unserved: no running worker serves " + c.AppID
	}
	if eta := c.ETA(rate); eta > 0 {
		s += fmt.Sprintf("  %.1f/s  ETA %s", rate, formatETA(time.Duration(eta*float64(time.Second))))
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
			rate := c.RatePerSecond
			if p, ok := last[c.Campaign]; ok && now.After(p.at) {
				rate = float64(c.Succeeded+c.Failed-p.done) / now.Sub(p.at).Seconds()
			}
			last[c.Campaign] = sample{now, c.Succeeded + c.Failed}
			allDone = allDone && (c.Done || c.State == campaign.StateCancelled)
			if asJSON {
				st := c
				st.RatePerSecond, st.ETASeconds = rate, c.ETA(rate)
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

func exportCommand(a *app) *cobra.Command {
	var redisURL, storageURL, format string
	cmd := &cobra.Command{
		Use:   "export CAMPAIGN",
		Short: "List every scene of a campaign with its key and status",
		Long: `List every scene of a campaign, one row each: scene, path, status
(succeeded, failed or pending), key (the object key, prefix included),
content_type, size (bytes), sha256 (lowercase hex of the stored bytes),
errcode (0 when none) and error. A row of interface B has its scene and an
empty path; a row of interface A or C its path and an empty scene. CSV with a
header line, or JSON lines with --format jsonl.

CSV cells that a spreadsheet would run as a formula (starting with =, +, -, @,
a tab or a carriage return) get a leading ' ; JSON lines keep every value as
it is.

A finished campaign's rows live in its manifest beside its codes
(CAMPAIGN/manifest-NNNNN.gz); export reads them from --storage then.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != campaign.FormatCSV && format != campaign.FormatJSONL {
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
			blobs, err := a.manifestStore(ctx, c, storageURL)
			if err != nil {
				return err
			}
			w, err := campaign.NewExportWriter(a.stdout, format)
			if err != nil {
				return err
			}
			if err := store.Export(ctx, c, blobs, w.Write); err != nil {
				return err
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", campaign.FormatCSV, "csv or jsonl")
	a.redisFlag(cmd.Flags(), &redisURL)
	a.storageFlag(cmd.Flags(), &storageURL)
	return cmd
}

// manifestStore opens the store of storageURL when the campaign's rows are
// in its manifest there; nil otherwise (Redis holds them).
func (a *app) manifestStore(ctx context.Context, c campaign.Campaign, storageURL string) (campaign.Blobs, error) {
	if c.Manifest == 0 {
		return nil, nil
	}
	st, err := storage.Open(ctx, storageURL, storage.Options{Getenv: a.getenv})
	if err != nil {
		return nil, fmt.Errorf("--storage/STORAGE_URL (campaign %s is finished: its rows are in its manifest there): %w", c.Name, err)
	}
	return st, nil
}

func retryCommand(a *app) *cobra.Command {
	var redisURL, storageURL string
	cmd := &cobra.Command{
		Use:   "retry CAMPAIGN",
		Short: "Run a campaign's failed and pending scenes again",
		Long: `Reconcile a campaign with its queue and resume it: every batch that holds a
failed or pending scene and has no live task (deleted in the dashboard,
archived, lost with Redis, skipped while the campaign was cancelled) is
enqueued again, its failed scenes turn back to pending (for example after
the page was published), and a cancelled campaign becomes active.

Running it again, or two at once, or after one was killed halfway, is safe
and always finishes the job. A finished campaign's rows are read back from
its manifest in --storage first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			blobs, err := a.manifestStore(ctx, c, storageURL)
			if err != nil {
				return err
			}
			insp := asynq.NewInspectorFromRedisClient(rdb)
			p, err := producer.New(store, asynq.NewClientFromRedisClient(rdb), producer.Config{Tasks: insp, Blobs: blobs})
			if err != nil {
				return err
			}
			sum, err := p.Retry(ctx, args[0])
			if errors.Is(err, campaign.ErrIncomplete) {
				return usagef("campaign %s was not completely enqueued: run the same enqueue command again", args[0])
			}
			if err != nil {
				return err
			}
			if sum.Run == 0 {
				fmt.Fprintf(a.stdout, "campaign %s: nothing to retry (%d succeeded, %d failed, %d pending)\n", args[0], sum.Status.Succeeded, sum.Status.Failed, sum.Status.Pending)
				return nil
			}
			fmt.Fprintf(a.stdout, "campaign %s: retry run %d: %d failed scenes back to pending; %d batches with pending scenes: %d enqueued, %d already queued\n",
				args[0], sum.Run, sum.Reset, sum.Batches, sum.Enqueued, sum.Live)
			return nil
		},
	}
	a.redisFlag(cmd.Flags(), &redisURL)
	a.storageFlag(cmd.Flags(), &storageURL)
	return cmd
}

func cancelCommand(a *app) *cobra.Command {
	var redisURL string
	cmd := &cobra.Command{
		Use:   "cancel CAMPAIGN",
		Short: "Stop a campaign's remaining work",
		Long: `Stop a campaign, at any moment (also while it is still being enqueued):
workers finish the calls in flight and skip its remaining scenes, which stay
pending. What is done stays done; only 'wxacode retry' resumes it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			rdb, store, err := openStore(ctx, redisURL)
			if err != nil {
				return err
			}
			defer rdb.Close()
			st, err := store.Cancel(ctx, args[0])
			if errors.Is(err, campaign.ErrNotFound) {
				return usagef("campaign %s not found", args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "campaign %s cancelled: %d succeeded, %d failed, %d left pending\n", st.Campaign, st.Succeeded, st.Failed, st.Pending)
			return nil
		},
	}
	a.redisFlag(cmd.Flags(), &redisURL)
	return cmd
}

// openStore connects to Redis and returns its campaign store; the caller
// closes the client.
func openStore(ctx context.Context, redisURL string) (redis.UniversalClient, *campaign.Store, error) {
	rdb, err := openRedis(ctx, redisURL, 0)
	if err != nil {
		return nil, nil, err
	}
	return rdb, campaign.NewStore(rdb, ""), nil
}
