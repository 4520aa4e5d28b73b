package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wxacode/wxacode/internal/testenv"
	"github.com/wxacode/wxacode/simulator"
)

// BenchmarkAPIPutMillion sends one PUT of a 1,000,000-scene campaign (the
// body generated as it is sent, about 15 MB) to the built `wxacode serve`
// on a Redis server of its own, and reports the request's seconds, the
// Redis memory the campaign takes and the server process's peak resident
// memory (VmHWM). Run with -benchtime 1x.
func BenchmarkAPIPutMillion(b *testing.B) {
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv := testenv.NewRedisServer(b)
		r := testenv.NewRedisOn(b, srv, 1)
		env := []string{"REDIS_URL=" + r.URL, "STORAGE_URL=file://" + b.TempDir(), "WECHAT_APPID=" + simulator.DemoAppID}
		base := benchServe(b, env)
		before := usedMemory(b, r)
		hwmIdle := vmHWM(b, base.pid)

		pr, pw := io.Pipe()
		go func() {
			bw := bufio.NewWriterSize(pw, 64<<10)
			bw.WriteString(`{"page": "pages/p/index", "scenes": [`)
			for j := 1; j <= n; j++ {
				if j > 1 {
					bw.WriteByte(',')
				}
				bw.WriteString(`"sku`)
				bw.WriteString(strconv.Itoa(10_000_000 + j))
				bw.WriteByte('"')
			}
			bw.WriteString("]}")
			pw.CloseWithError(bw.Flush())
		}()
		req, err := http.NewRequestWithContext(context.Background(), "PUT", base.url+"api/v1/campaigns/million", pr)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		b.StopTimer()
		if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"total":1000000`) {
			b.Fatalf("PUT = %d %s", resp.StatusCode, body)
		}
		redisBytes := usedMemory(b, r) - before
		hwm := vmHWM(b, base.pid)
		b.ReportMetric(took.Seconds(), "s/put")
		b.ReportMetric(float64(redisBytes)/(1<<20), "redis-MB")
		b.ReportMetric(float64(hwm)/(1<<10), "server-peak-RSS-MB")
		b.Logf("PUT of %d scenes: %s; Redis +%.1f MB; serve peak RSS %.1f MB (%.1f MB before the PUT)",
			n, took.Round(time.Millisecond), float64(redisBytes)/(1<<20), float64(hwm)/(1<<10), float64(hwmIdle)/(1<<10))
	}
}

type benchServer struct {
	url string
	pid int
}

// benchServe starts the built serve with env and returns its URL and pid.
func benchServe(b *testing.B, env []string) benchServer {
	b.Helper()
	p := start(b, env, "serve", "--addr", "127.0.0.1:0")
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if u := urlRE.FindString(p.out.String()); u != "" {
			return benchServer{url: u + "/", pid: p.cmd.Process.Pid}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("serve did not say where it listens: %s", p.out.String())
	return benchServer{}
}

// vmHWM reads a process's peak resident set size in KiB.
func vmHWM(b *testing.B, pid int) int64 {
	b.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// usedMemory reads used_memory from INFO memory.
func usedMemory(b *testing.B, r *testenv.Redis) int64 {
	b.Helper()
	info, err := r.Client.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory")
	return 0
}
