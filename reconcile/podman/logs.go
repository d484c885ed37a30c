package podman

import (
	"context"
	"io"
	"strconv"

	"github.com/containers/podman/v4/pkg/bindings/containers"
)

// LogOptions select what Logs writes, as `podman logs` flags do.
type LogOptions struct {
	Follow     bool // go on writing what the container prints, until ctx ends
	Tail       int  // the last Tail lines only; negative: all
	Timestamps bool // each line led by its time
}

// Logs writes what the container printed: its stdout to stdout, its
// stderr to stderr, until the end of the log or, with Follow, until the
// container stops or ctx ends (then it returns nil).
func (c *Client) Logs(ctx context.Context, container string, o LogOptions, stdout, stderr io.Writer) error {
	// A stream: no deadline of its own.
	cctx, cancel, err := c.call(ctx, 0)
	defer cancel()
	if err != nil {
		return err
	}
	opts := new(containers.LogOptions).WithFollow(o.Follow).WithStdout(true).WithStderr(true).WithTimestamps(o.Timestamps)
	if o.Tail >= 0 {
		opts.WithTail(strconv.Itoa(o.Tail))
	}
	// The bindings send each frame on a channel and block until it is
	// taken: every frame is taken until they return.
	outc, errc := make(chan string), make(chan string)
	done := make(chan error, 1)
	go func() { done <- containers.Logs(cctx, container, opts, outc, errc) }()
	for {
		select {
		case line := <-outc:
			_, _ = io.WriteString(stdout, line)
		case line := <-errc:
			_, _ = io.WriteString(stderr, line)
		case err := <-done:
			if ctx.Err() != nil {
				return nil
			}
			return c.wrap(cctx, "logs of "+container, err)
		}
	}
}
