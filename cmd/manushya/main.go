// Command manushya runs Manushya: every service in one binary, chosen by -target.
//
//	manushya serve [-target=identity,memory,...]   run targets (default all)
//	manushya dev                                   everything in one process, embedded NATS
//	manushya migrate                               apply database migrations
//	manushya healthcheck                           exit 0 when the local server is healthy
//	manushya admin bootstrap --slug=acme           create a tenant and its first admin key
//
// Configuration comes from flags, MANUSHYA_* environment variables and an optional
// YAML file (-config); -print-config shows the result with secrets masked.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/manushya-ai/manushya/pkg/telemetry"
)

func main() {
	telemetry.TuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		if !errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "manushya:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	return 1
}
