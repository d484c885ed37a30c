package podmantest_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cuelet/cuelet/reconcile/podman/podmantest"
)

func TestCallLogForwardsEveryCallAndTimesIt(t *testing.T) {
	p := podmantest.New(t)
	l := podmantest.NewCallLog(t, p.URL)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", strings.TrimPrefix(l.URL, "unix://"))
	}}}
	before := time.Now()
	for _, path := range []string{"/_ping", "/v4.0.0/libpod/pods/json"} {
		resp, err := client.Get("http://d" + path)
		if err != nil {
			t.Fatal(err)
		}
		// Read the answer through, as a podman client does: the log ends a
		// call once podman's answer has passed, and a client that has only
		// the headers may take the log while the body is still on its way
		// (or, closing early, cut the proxy's copy short).
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatalf("GET %s through the log: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s through the log: %s, want podman's 200", path, resp.Status)
		}
	}
	calls := l.Take()
	if len(calls) != 2 || calls[0].Op != "GET /_ping" || calls[1].Op != "GET /v4.0.0/libpod/pods/json" {
		t.Fatalf("calls %+v, want the two GETs in order", calls)
	}
	for _, c := range calls {
		if c.Start.Before(before) || c.End.Before(c.Start) {
			t.Errorf("%s: start %v, end %v; want start after %v and end after start", c.Op, c.Start, c.End, before)
		}
	}
	if rest := l.Calls(); len(rest) != 0 {
		t.Errorf("after Take: %+v, want none", rest)
	}
}

// A client can read podman's whole answer before the log's handler
// returns; the call must be ended by then, or a caller that takes the log
// right after its last call finds that call still in flight.
func TestCallLogEndsACallBeforeItsCallerHasTheAnswer(t *testing.T) {
	p := podmantest.New(t)
	l := podmantest.NewCallLog(t, p.URL)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", strings.TrimPrefix(l.URL, "unix://"))
	}}}
	for i := range 200 {
		resp, err := client.Get("http://d/_ping")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		calls := l.Take()
		if len(calls) != 1 || calls[0].End.IsZero() {
			t.Fatalf("call %d taken right after its answer: %+v, want one ended call", i, calls)
		}
	}
}
