package agenttest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event is one podman container or pod event, with podman's own time.
type Event struct {
	Time   time.Time
	Type   string // container, pod
	Action string // create, init, start, died, remove, …
	ID     string
	Name   string // container or pod name
	Pod    string // for a container: its pod's ID
}

func (e Event) String() string {
	return fmt.Sprintf("%s %s %s %s", e.Time.Format("15:04:05.000"), e.Type, e.Action, e.Name)
}

// Events records podman's event stream from the node's start on. It asks
// podman for events since a time, so nothing is missed while a stream
// connects or reconnects (after a podman restart); events seen twice are
// kept once.
type Events struct {
	mu   sync.Mutex
	list []Event
	seen map[string]bool
	more chan struct{}
}

func followEvents(ctx context.Context, socket string, since time.Time) *Events {
	e := &Events{seen: map[string]bool{}, more: make(chan struct{})}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	go func() {
		for ctx.Err() == nil {
			if last := e.last(); last.After(since) {
				since = last.Add(-time.Second)
			}
			e.stream(ctx, client, since)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return e
}

func (e *Events) stream(ctx context.Context, client *http.Client, since time.Time) {
	q := url.Values{}
	q.Set("stream", "true")
	q.Set("since", strconv.FormatInt(since.Unix(), 10))
	q.Set("filters", `{"type":["container","pod"]}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://d/v4.0.0/libpod/events?"+q.Encode(), nil)
	if err != nil {
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Type     string
			Action   string
			TimeNano int64 `json:"timeNano"`
			Actor    struct {
				ID         string
				Attributes map[string]string
			}
		}
		if err := dec.Decode(&m); err != nil {
			return
		}
		ev := Event{
			Time: time.Unix(0, m.TimeNano), Type: m.Type, Action: m.Action, ID: m.Actor.ID,
			Name: m.Actor.Attributes["name"], Pod: m.Actor.Attributes["podId"],
		}
		key := fmt.Sprint(m.TimeNano, ev.Type, ev.Action, ev.ID)
		e.mu.Lock()
		if !e.seen[key] {
			e.seen[key] = true
			e.list = append(e.list, ev)
			close(e.more)
			e.more = make(chan struct{})
		}
		e.mu.Unlock()
	}
}

func (e *Events) last() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.list) == 0 {
		return time.Time{}
	}
	return e.list[len(e.list)-1].Time
}

// All returns the events recorded so far, in the order podman sent them.
func (e *Events) All() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.list...)
}

// Wait returns the first event at or after since that match accepts,
// waiting at most within.
func (e *Events) Wait(since time.Time, within time.Duration, match func(Event) bool) (Event, error) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		list, more := e.list, e.more
		e.mu.Unlock()
		for _, ev := range list {
			if !ev.Time.Before(since) && match(ev) {
				return ev, nil
			}
		}
		select {
		case <-more:
		case <-deadline.C:
			var recent []string
			for _, ev := range list {
				if !ev.Time.Before(since) {
					recent = append(recent, ev.String())
				}
			}
			return Event{}, fmt.Errorf("no such podman event within %s; events since %s:\n%s",
				within, since.Format("15:04:05.000"), strings.Join(recent, "\n"))
		}
	}
}

// Since returns the events at or after t that match accepts.
func (e *Events) Since(t time.Time, match func(Event) bool) []Event {
	var out []Event
	for _, ev := range e.All() {
		if !ev.Time.Before(t) && match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// PodEvent matches an event of the pod (type pod) with that name and action.
func PodEvent(name, action string) func(Event) bool {
	return func(e Event) bool { return e.Type == "pod" && e.Name == name && e.Action == action }
}

// ContainerEvent matches an event of the named container with that action.
func ContainerEvent(name, action string) func(Event) bool {
	return func(e Event) bool { return e.Type == "container" && e.Name == name && e.Action == action }
}

// AnyOf matches an event any of ms accepts.
func AnyOf(ms ...func(Event) bool) func(Event) bool {
	return func(e Event) bool {
		for _, m := range ms {
			if m(e) {
				return true
			}
		}
		return false
	}
}
