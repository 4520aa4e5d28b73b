package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/wxacode/wxacode/campaign"
	"github.com/wxacode/wxacode/producer"
	"github.com/wxacode/wxacode/storage"
	"github.com/wxacode/wxacode/wechat"
)

func init() { commands = append(commands, enqueueCommand) }

type enqueueOptions struct {
	campaign, page, scenes, rangeTmpl string
	iface, paths                      string
	from, to                          int64
	width                             int
	envVersion                        string
	checkPath, hyaline, autoColor     bool
	lineColor                         string
	appid, priority, webhook          string
	dryRun                            bool
	batchSize                         int
	redisURL, rate, storageURL        string
}

func enqueueCommand(a *app) *cobra.Command {
	o := &enqueueOptions{}
	cmd := &cobra.Command{
		Use:   "enqueue --campaign NAME (--page PAGE (--scenes FILE|- | --range TEMPLATE --from A --to B) | --interface a|c --paths FILE|-)",
		Short: "Validate scenes (or paths) and enqueue a campaign",
		Long: `Validate every scene, then record the campaign and enqueue its batches.

Scenes come from a file (one per line, LF or CRLF, blank lines skipped), from
standard input (--scenes -), or from a numeric range (--range 'sku%08d'
--from 1 --to 1000000). A scene is 1 to 32 characters from 0-9 A-Z a-z and
!#$&'()*+,/:;=?@-._~. If any scene is invalid, each bad line is printed as
LINE: reason and nothing is enqueued (exit 2). Duplicates are enqueued once
and counted.

Running the same command again is harmless: the campaign is recognised and
no batch is enqueued twice. The same name with other scenes or options is
refused.

Interfaces A and C (--interface a|c --paths FILE|-): instead of a page and
scenes, each line is a path, a page with its query such as
pages/item/item?id=42 (A: up to 1024 bytes, C: up to 128; C makes the old
square QR code). Use them for a few codes whose query does not fit a
32-character scene; for bulk, use B (the default), which has no lifetime
limit. A and C together may make at most 100,000 codes per app, ever
(WeChat then answers 45029): the campaign is checked against what is left
(the workers' ledger in Redis, less the paths still pending in the app's
other A and C campaigns) and refused whole, exit 2 with how many remain,
when it would pass it; the workers' ledger refuses any call past the limit
too. A takes --width, --env-version, --auto-color, --line-color and
--hyaline; C takes --width only; neither takes --page or --check-path.`,
		Example: `  wxacode enqueue --campaign spring --page pages/product/index --scenes scenes.txt
  seq -f 'sku%08g' 1 1000 | wxacode enqueue --campaign spring --page pages/p/index --scenes -
  wxacode enqueue --campaign boxes --page pages/p/index --range 'sku%08d' --from 1 --to 1000000 --priority low
  wxacode enqueue --campaign vip --interface a --paths paths.txt --hyaline`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return a.runEnqueue(cmd, o) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.campaign, "campaign", "", "campaign name: 1 to 64 of A-Z a-z 0-9 . _ - (required; part of every object key)")
	fs.StringVar(&o.page, "page", "", `page the codes open, such as pages/index/index (no leading "/", no query; "" for the home page)`)
	fs.StringVar(&o.scenes, "scenes", "", "file of scenes, one per line, or - for standard input")
	fs.StringVar(&o.iface, "interface", "b", "WeChat interface: b (scenes, no lifetime limit), a or c (paths, 100,000 codes per app ever)")
	fs.StringVar(&o.paths, "paths", "", "with --interface a or c: file of paths (page?query), one per line, or - for standard input")
	fs.StringVar(&o.rangeTmpl, "range", "", "scene template with one %d or %x verb, such as sku%08d (with --from and --to)")
	fs.Int64Var(&o.from, "from", 0, "first number of --range")
	fs.Int64Var(&o.to, "to", 0, "last number of --range (inclusive)")
	fs.IntVar(&o.width, "width", wechat.DefaultWidth, "code width in pixels, 280 to 1280")
	fs.StringVar(&o.envVersion, "env-version", wechat.EnvRelease, "version the code opens: release, trial or develop")
	fs.BoolVar(&o.checkPath, "check-path", true, "ask WeChat to check that the page exists in the released version (--check-path=false for unreleased pages)")
	fs.BoolVar(&o.hyaline, "hyaline", false, "transparent background")
	fs.BoolVar(&o.autoColor, "auto-color", false, "let WeChat pick the line colour")
	fs.StringVar(&o.lineColor, "line-color", "0,0,0", "line colour as R,G,B (0-255 each), used without --auto-color")
	fs.StringVar(&o.appid, "appid", a.getenv("WECHAT_APPID"), "the Mini Program's appid (env WECHAT_APPID)")
	fs.StringVar(&o.priority, "priority", "default", "queue priority: high, default or low (workers serve them 6:3:1)")
	fs.StringVar(&o.webhook, "webhook", "", "http(s) URL POSTed the campaign's status when it is done (signed with WXACODE_WEBHOOK_SECRET of the workers)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "validate and summarise; enqueue nothing")
	fs.IntVar(&o.batchSize, "batch-size", 200, "scenes per task")
	fs.StringVar(&o.rate, "rate", or(a.getenv("WXACODE_RATE"), defaultRate), "the ceiling N/DURATION, for the ETA (env WXACODE_RATE)")
	a.redisFlag(fs, &o.redisURL)
	a.storageFlag(fs, &o.storageURL)
	return cmd
}

// specFlags names the flag of each field a producer.FieldError names.
var specFlags = map[string]string{
	"campaign": "--campaign", "appid": "--appid/WECHAT_APPID", "page": "--page", "width": "--width",
	"env_version": "--env-version", "line_color": "--line-color", "priority": "--priority",
	"webhook": "--webhook", "interface": "--interface", "auto_color": "--auto-color",
	"is_hyaline": "--hyaline", "check_path": "--check-path", "paths": "--paths",
}

// limitedRefused lists, for interfaces A and C, the flags each does not
// take.
var limitedRefused = map[campaign.Interface][]string{
	campaign.InterfaceA: {"page", "scenes", "range", "from", "to", "check-path"},
	campaign.InterfaceC: {"page", "scenes", "range", "from", "to", "check-path", "env-version", "hyaline", "auto-color", "line-color"},
}

func (a *app) runEnqueue(cmd *cobra.Command, o *enqueueOptions) error {
	fs := cmd.Flags()
	if o.campaign == "" {
		return usagef("enqueue: --campaign is required")
	}
	iface, err := campaign.ParseInterface(o.iface)
	if err != nil {
		return usagef("--interface: %v", err)
	}
	if iface.Limited() {
		for _, f := range limitedRefused[iface] {
			if flagSet(fs, f) {
				return usagef("--%s: interface %s does not take it (see wxacode enqueue --help)", f, iface)
			}
		}
		if o.paths == "" {
			return usagef("enqueue: --interface %s needs --paths FILE (or - for standard input)", iface)
		}
	} else {
		if flagSet(fs, "paths") {
			return usagef("--paths: interface b takes --scenes or --range; paths are for --interface a or c")
		}
		if !flagSet(fs, "page") {
			return usagef(`enqueue: --page is required ("" for the home page)`)
		}
	}
	if o.appid == "" {
		return usagef("enqueue: --appid or WECHAT_APPID is required")
	}
	if _, err := check(setting{"appid", "WECHAT_APPID"}, o.appid, parseAppID); err != nil {
		return err
	}
	opts := wechat.CodeOptions{
		Page: o.page, CheckPath: o.checkPath, EnvVersion: o.envVersion, Width: o.width,
		AutoColor: o.autoColor, IsHyaline: o.hyaline,
	}
	if opts.LineColor, err = wechat.ParseColor(o.lineColor); err != nil {
		return usagef("--line-color: %v", err)
	}
	if o.width == 0 { // 0 would mean WeChat's default to the API, not here
		return usagef("--width %d: must be from %d to %d", o.width, wechat.MinWidth, wechat.MaxWidth)
	}
	prefix, err := storage.KeyPrefix(o.storageURL)
	if err != nil {
		return usagef("--storage/STORAGE_URL: %v", err)
	}
	if iface.Limited() {
		opts.CheckPath = false // A and C have no check_path
		if iface == campaign.InterfaceC {
			opts = wechat.CodeOptions{Width: o.width}
		}
	}
	spec := producer.Spec{Name: o.campaign, AppID: o.appid, Interface: iface, Options: opts, Priority: o.priority, KeyPrefix: prefix, Webhook: o.webhook}
	var fe *producer.FieldError
	if err := spec.Validate(); errors.As(err, &fe) {
		return usagef("%s", fieldMessage(fe))
	}
	queue, _ := campaign.QueueFor(o.appid, o.priority)
	lim, err := check(setting{"rate", "WXACODE_RATE"}, o.rate, parseRate)
	if err != nil {
		return err
	}
	if o.batchSize < 1 || o.batchSize > 100_000 {
		return usagef("--batch-size %d: want 1 to 100000", o.batchSize)
	}

	var sc producer.Scenes
	items := "scenes"
	switch {
	case iface.Limited():
		items = "paths"
		var r io.Reader = a.stdin
		if o.paths != "-" {
			f, err := os.Open(o.paths)
			if err != nil {
				return usagef("--paths: %v", err)
			}
			defer f.Close()
			r = f
		}
		sc, err = producer.ReadPaths(r, iface)
	case o.scenes != "" && o.rangeTmpl != "":
		return usagef("enqueue: give --scenes or --range, not both")
	case o.scenes != "":
		var r io.Reader = a.stdin
		if o.scenes != "-" {
			f, err := os.Open(o.scenes)
			if err != nil {
				return usagef("--scenes: %v", err)
			}
			defer f.Close()
			r = f
		}
		sc, err = producer.Read(r)
	case o.rangeTmpl != "":
		if !flagSet(fs, "from") || !flagSet(fs, "to") {
			return usagef("--range needs --from and --to")
		}
		sc, err = producer.Range(o.rangeTmpl, o.from, o.to)
	default:
		return usagef("enqueue: give --scenes FILE (or - for standard input) or --range TEMPLATE --from A --to B")
	}
	var inv *producer.InvalidError
	if errors.As(err, &inv) {
		for _, l := range inv.Lines {
			fmt.Fprintln(a.stderr, l.Error())
		}
		return usagef("%d invalid %s: nothing enqueued", len(inv.Lines), strings.TrimSuffix(items, "s")+"(s)")
	}
	if err != nil {
		return usagef("%v", err)
	}
	if len(sc.List) == 0 {
		return usagef("enqueue: no %s: nothing enqueued", items)
	}
	batches := (len(sc.List) + o.batchSize - 1) / o.batchSize
	eta := producer.ETA(int64(len(sc.List)), lim.N, lim.Per)
	if o.dryRun {
		fmt.Fprintf(a.stdout, "dry run: campaign %s: %d %s (%d duplicates dropped) in %d batches on queue %s; ETA at the ceiling %s: %s. Nothing enqueued.\n",
			o.campaign, len(sc.List), items, sc.Duplicates, batches, queue, lim, formatETA(eta))
		return nil
	}

	ctx := cmd.Context()
	rdb, err := openRedis(ctx, o.redisURL, 32)
	if err != nil {
		return err
	}
	defer rdb.Close()
	client := asynq.NewClientFromRedisClient(rdb)
	cfg := producer.Config{BatchSize: o.batchSize, Ledger: wechat.QuotaLedger{Redis: rdb}}
	if isTerminal(a.stderr) {
		line := &liveLine{w: a.stderr}
		cfg.Progress = func(done, total int) {
			line.draw("enqueue "+bar(int64(done), int64(total), 30), done == total)
			if done == total {
				line.end()
			}
		}
	}
	store := campaign.NewStore(rdb, "")
	p, err := producer.New(store, client, cfg)
	if err != nil {
		return err
	}
	sum, err := p.Enqueue(ctx, spec, sc.List)
	if errors.Is(err, campaign.ErrExists) {
		return usagef("campaign %s exists with other %s or options: choose another name", o.campaign, items)
	}
	var qe *producer.QuotaError
	if errors.As(err, &qe) {
		return usagef("%v", qe)
	}
	if err != nil {
		return err
	}
	if sum.Cancelled {
		fmt.Fprintf(a.stdout, "campaign %s was cancelled while it was enqueued: %d batches enqueued of %d; 'wxacode retry %s' resumes it\n",
			o.campaign, sum.Enqueued+sum.AlreadyQueued, sum.Campaign.Batches, o.campaign)
		return nil
	}
	verb := "enqueued"
	if !sum.Created {
		verb = "already known; re-enqueued what was missing"
	}
	fmt.Fprintf(a.stdout, "campaign %s %s: %d %s (%d duplicates dropped), %d batches (%d new, %d already queued) on queue %s; ETA at the ceiling %s: %s\n",
		o.campaign, verb, sum.Campaign.Total, items, sc.Duplicates, sum.Campaign.Batches, sum.Enqueued, sum.AlreadyQueued, queue, lim, formatETA(eta))
	if served, err := store.Served(ctx); err == nil && served[o.appid] == 0 && !sum.Campaign.Done() {
		fmt.Fprintf(a.stderr, "note: no running worker serves %s yet: the campaign waits until a worker with it in WXACODE_APPS or WECHAT_APPID starts\n", o.appid)
	}
	return nil
}

// fieldMessage names the flag of a bad field: "width 279: …" becomes
// "--width 279: …".
func fieldMessage(fe *producer.FieldError) string {
	flag, msg := specFlags[fe.Field], fe.Err.Error()
	if rest, ok := strings.CutPrefix(msg, strings.ReplaceAll(fe.Field, "_", "")); ok && strings.HasPrefix(rest, " ") {
		return flag + rest
	}
	if rest, ok := strings.CutPrefix(msg, fe.Field); ok && strings.HasPrefix(rest, " ") {
		return flag + rest
	}
	return flag + ": " + msg
}
