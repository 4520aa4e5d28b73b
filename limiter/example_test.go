package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/wxacode/wxacode/limiter"
)

func Example() {
	// Any Redis does; an embedded one keeps the example self-contained.
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	limit, err := limiter.ParseLimit("5000/1m") // WXACODE_RATE
	if err != nil {
		panic(err)
	}
	lim, err := limiter.New(rdb, limiter.Config{Limit: limit})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	const app = "wx0123456789abcdef"

	// At start: refuse to run with a ceiling other than the fleet's.
	if err := lim.Check(ctx, app); err != nil {
		panic(err)
	}
	for range 3 {
		if err := lim.Wait(ctx, app); err != nil {
			panic(err)
		}
		// Call wxa/getwxacodeunlimit here.
	}
	fmt.Println("ceiling", lim.Limit(), "margin", lim.Margin())
	fmt.Println("3 calls admitted")

	// WeChat answered 45009: hold the app's calls in every worker.
	until, err := lim.Pause(ctx, app, time.Minute)
	if err != nil {
		panic(err)
	}
	fmt.Println("paused for", time.Until(until).Round(time.Second))

	// A caller that cannot wait that long is told at once.
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err = lim.Wait(short, app)
	fmt.Println("deadline exceeded:", errors.Is(err, context.DeadlineExceeded))
	// Output:
	// ceiling 5000/1m margin 600ms
	// 3 calls admitted
	// paused for 1m0s
	// deadline exceeded: true
}

func ExampleParseLimit() {
	l, err := limiter.ParseLimit("600/10s")
	if err != nil {
		panic(err)
	}
	fmt.Println(l.N, l.Per, l)
	_, err = limiter.ParseLimit("600 per minute")
	fmt.Println(err)
	// Output:
	// 600 10s 600/10s
	// parse limit "600 per minute": want N/DURATION, such as 5000/1m
}
