package podman

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sirupsen/logrus"
)

func TestForwardLogrus_turns_entries_into_zerolog_events_at_their_level(t *testing.T) {
	var out bytes.Buffer
	l := logrus.New()
	forwardLogrus(l, zerolog.New(&out).Level(zerolog.InfoLevel))

	l.Debug("not kept at info")
	l.WithField("id", "abc").Warn("container gone")
	l.WithError(errors.New("refused")).WithField("wait", 1500*time.Millisecond).Error("cannot connect")
	l.Info("plain")

	want := []string{
		`{"level":"warn","component":"podman-bindings","id":"abc","message":"container gone"}`,
		`{"level":"error","component":"podman-bindings","error":"refused","wait":"1.5s","message":"cannot connect"}`,
		`{"level":"info","component":"podman-bindings","message":"plain"}`,
	}
	if got := strings.TrimSpace(out.String()); got != strings.Join(want, "\n") {
		t.Fatalf("zerolog got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if l.GetLevel() != logrus.InfoLevel {
		t.Errorf("logrus level %v, want info like the zerolog logger", l.GetLevel())
	}
}

func TestForwardLogrus_writes_nothing_in_logrus_own_format(t *testing.T) {
	var theirs bytes.Buffer
	l := logrus.New()
	l.SetOutput(&theirs)
	forwardLogrus(l, zerolog.Nop())
	l.Error("only through zerolog")
	if theirs.Len() != 0 {
		t.Fatalf("logrus still wrote %q to its old output", theirs.String())
	}
}

func TestForwardLogrus_keeps_the_bindings_request_trace_out_of_debug_logs(t *testing.T) {
	var out bytes.Buffer
	l := logrus.New()
	forwardLogrus(l, zerolog.New(&out).Level(zerolog.DebugLevel))
	l.Debug("DoRequest Method: GET URI: http://d/v4.9.5/libpod/_ping")
	l.Warn("kept")
	if got := out.String(); strings.Contains(got, "DoRequest") || !strings.Contains(got, "kept") {
		t.Fatalf("zerolog got %q: want the warning, not the request trace", got)
	}
}
