package podmantest

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// CallLog is a socket in front of a podman service's that records every
// API call passing through it: benchmarks give a client its URL to see
// when each call came, how long podman took over it and how many were in
// flight. Podman's events tell only when podman has done something.
type CallLog struct {
	URL string // unix://…, for the client instead of the service's

	mu    sync.Mutex
	calls []Call
	takes int // Take calls: an index into calls holds only within one
}

// Call is one API call.
type Call struct {
	Op    string    // method and path: "POST /v4.3.1/libpod/pods/create"
	Start time.Time // when it came
	End   time.Time // when podman's answer ended; zero while in flight (an event stream)
}

// NewCallLog listens on a socket of tb's and forwards to podman at target
// (unix://…) until tb ends.
func NewCallLog(tb testing.TB, target string) *CallLog {
	tb.Helper()
	sock := filepath.Join(tb.TempDir(), "calls.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	l := &CallLog{URL: "unix://" + sock}
	podmanSock := strings.TrimPrefix(target, "unix://")
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: "http", Host: "d"}) },
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", podmanSock)
			},
			MaxIdleConnsPerHost: 64,
		},
		FlushInterval: -1, // the event stream
	}
	// A call ends when podman's answer has been read to its end, before
	// the proxy writes its last bytes: a client holding the whole answer
	// then never finds its call still in flight. The handler's return ends
	// a call that never got an answer (podman unreachable).
	proxy.ModifyResponse = func(resp *http.Response) error {
		end := resp.Request.Context().Value(endKey{}).(func())
		resp.Body = &endOnEOF{ReadCloser: resp.Body, end: end}
		return nil
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		end := l.begin(r.Method + " " + r.URL.Path)
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), endKey{}, end)))
		end()
	})}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return l
}

// begin records a call that comes now and returns what ends it, once.
func (l *CallLog) begin(op string) (end func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := len(l.calls)
	l.calls = append(l.calls, Call{Op: op, Start: time.Now()})
	takes := l.takes
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if takes == l.takes { // not taken meanwhile
				l.calls[i].End = time.Now()
			}
		})
	}
}

type endKey struct{}

// endOnEOF ends its call when the body it wraps has been read through.
type endOnEOF struct {
	io.ReadCloser
	end func()
}

func (b *endOnEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.end()
	}
	return n, err
}

// Calls returns the calls recorded so far.
func (l *CallLog) Calls() []Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Call(nil), l.calls...)
}

// Take returns the calls recorded so far and forgets them.
func (l *CallLog) Take() []Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.calls
	l.calls = nil
	l.takes++
	return c
}
