package systemd

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// pipe returns both ends of a pipe and the $JOURNAL_STREAM value that
// names its write end, as systemd sets it for a service's stderr.
func pipe(t *testing.T) (r, w *os.File, stream string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	var st unix.Stat_t
	if err := unix.Fstat(int(w.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return r, w, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// logLines logs one event at each level through LogWriter and returns the
// lines that reached the pipe.
func logLines(t *testing.T, stream string, console bool) []string {
	t.Helper()
	r, w, _ := pipe(t)
	if stream == "" {
		// The stream of this very pipe.
		var st unix.Stat_t
		if err := unix.Fstat(int(w.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		stream = fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	}
	log := zerolog.New(LogWriter(w, stream, console)).Level(zerolog.DebugLevel)
	log.Error().Str("unit", "web.cue").Msg("broken")
	log.Warn().Msg("careful")
	log.Info().Msg("started")
	log.Debug().Msg("detail")
	w.Close()
	var lines []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func TestLogWriter_prefixes_each_event_with_its_priority_on_the_journal_stream(t *testing.T) {
	lines := logLines(t, "", false)
	want := []string{
		`<3>{"level":"error","unit":"web.cue","message":"broken"}`,
		`<4>{"level":"warn","message":"careful"}`,
		`<6>{"level":"info","message":"started"}`,
		`<7>{"level":"debug","message":"detail"}`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("journal lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestLogWriter_console_format_on_the_journal_has_priorities_and_no_colours(t *testing.T) {
	lines := logLines(t, "", true)
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4: %q", len(lines), lines)
	}
	for i, prefix := range []string{"<3>", "<4>", "<6>", "<7>"} {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("line %d %q lacks %s", i, lines[i], prefix)
		}
		if strings.Contains(lines[i], "\x1b[") {
			t.Errorf("line %d %q has colour escapes, which the journal stores as binary", i, lines[i])
		}
	}
	if !strings.Contains(lines[0], "broken") || !strings.Contains(lines[0], "unit=web.cue") {
		t.Errorf("console line %q lacks the message or its field", lines[0])
	}
}

func TestLogWriter_leaves_other_streams_alone(t *testing.T) {
	_, _, other := pipe(t) // a journal stream, but not the one logged to
	for _, stream := range []string{other, "12:not-a-number", "garbage"} {
		lines := logLines(t, stream, false)
		if len(lines) != 4 || !strings.HasPrefix(lines[0], `{"level":"error"`) {
			t.Errorf("JOURNAL_STREAM=%q: lines %q, want plain JSON", stream, lines)
		}
	}
}

func TestLogWriter_without_a_file_is_the_writer_itself(t *testing.T) {
	var b strings.Builder
	if w := LogWriter(&b, "1:2", false); w != &b {
		t.Fatalf("LogWriter(builder) = %T, want the builder", w)
	}
}
