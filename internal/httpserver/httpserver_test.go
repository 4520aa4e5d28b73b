package httpserver_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wxacode/wxacode/internal/httpserver"
)

// serve runs h under httpserver.New with a short stall and returns its
// address.
func serve(t *testing.T, stall time.Duration, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httpserver.New(h, httpserver.Config{BodyStall: stall})
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// bodyResult is what a handler saw of its request body.
type bodyResult struct {
	n   int
	err error
}

// reader is a handler that reads the body whole and reports it.
func reader(got chan<- bodyResult, after time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		got <- bodyResult{len(b), err}
		if err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(after): // a long answer after the body is in
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "read %d", len(b))
	})
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	srv := httpserver.New(http.NotFoundHandler(), httpserver.Config{})
	if srv.ReadHeaderTimeout != 10*time.Second || srv.IdleTimeout != 2*time.Minute || srv.ReadTimeout != 0 || srv.WriteTimeout != 0 {
		t.Errorf("timeouts header %s idle %s read %s write %s; want 10s, 2m, and none on whole requests and responses",
			srv.ReadHeaderTimeout, srv.IdleTimeout, srv.ReadTimeout, srv.WriteTimeout)
	}
}

func TestBodies(t *testing.T) {
	t.Parallel()
	const stall = 400 * time.Millisecond
	for _, tt := range []struct {
		name string
		// send writes the body after the headers.
		send     func(w io.Writer)
		length   int
		after    time.Duration
		wantErr  bool
		wantBody string
	}{
		{
			name:    "stalled body is cut",
			length:  100,
			send:    func(w io.Writer) { io.WriteString(w, strings.Repeat("x", 10)) },
			wantErr: true,
		},
		{
			name:   "slow upload that keeps moving is not cut",
			length: 20,
			send: func(w io.Writer) {
				// 20 bytes over 5 stall periods, one every 100 ms.
				for range 20 {
					io.WriteString(w, "x")
					time.Sleep(stall / 4)
				}
			},
			wantBody: "read 20",
		},
		{
			name:     "long answer after the body is not cut",
			length:   5,
			send:     func(w io.Writer) { io.WriteString(w, "hello") },
			after:    3 * stall,
			wantBody: "read 5",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan bodyResult, 1)
			addr := serve(t, stall, reader(got, tt.after))
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", addr, tt.length)
			tt.send(conn)
			// A failsafe only: the server must answer or close long before.
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			var res bodyResult
			select {
			case res = <-got:
			case <-time.After(30 * time.Second):
				t.Fatal("the handler is still reading the body after 30 s")
			}
			if tt.wantErr {
				var ne net.Error
				if !errors.As(res.err, &ne) || !ne.Timeout() {
					t.Fatalf("handler read %d bytes, err %v; want a timeout", res.n, res.err)
				}
				// The connection is closed: reading it ends (after any answer).
				if _, err := io.Copy(io.Discard, conn); err != nil {
					t.Fatalf("connection not closed by the server: %v", err)
				}
				return
			}
			if res.err != nil {
				t.Fatalf("handler read %d bytes, err %v", res.n, res.err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(b) != tt.wantBody {
				t.Fatalf("answer %d %q, want 200 %q", resp.StatusCode, b, tt.wantBody)
			}
		})
	}
}

// A body the handler never reads cannot hold the connection either.
func TestUnreadBodyDoesNotHoldTheConnection(t *testing.T) {
	t.Parallel()
	addr := serve(t, 300*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000000\r\n\r\nabc", addr)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("connection still open: %v", err)
	}
}
