// Command wxacode pre-generates WeChat Mini Program codes in bulk: it
// enqueues campaigns of scenes, runs the workers that call WeChat under a
// fleet-wide ceiling and store the images, and reports on campaigns.
package main

import "os"

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
