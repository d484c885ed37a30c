package systemd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// LogWriter is where a zerolog logger that would write to w writes. When
// w is the stream systemd connected to the journal (journalStream is the
// process's $JOURNAL_STREAM), every event gets its syslog priority as a
// "<N>" prefix, so that `journalctl -p err -u cuelet` finds the errors;
// otherwise w is used as is, through zerolog's console format when
// console is set.
func LogWriter(w io.Writer, journalStream string, console bool) io.Writer {
	if f, ok := w.(*os.File); ok && IsJournalStream(f, journalStream) {
		return &PriorityWriter{Out: w, Console: console}
	}
	if console {
		return zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return w
}

// IsJournalStream reports whether f is the journal stream that
// journalStream ($JOURNAL_STREAM, "DEVICE:INODE") names. systemd.exec(5)
// says to compare both numbers with the descriptor's: the variable is
// inherited by children whose stderr was redirected elsewhere, and a
// prefix written to a terminal or file would only be noise there.
func IsJournalStream(f *os.File, journalStream string) bool {
	devStr, inoStr, ok := bytes.Cut([]byte(journalStream), []byte(":"))
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(string(devStr), 10, 64)
	ino, err2 := strconv.ParseUint(string(inoStr), 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && uint64(st.Ino) == ino
}

// PriorityWriter writes zerolog events to the journal's stream transport,
// each prefixed with its syslog priority the way sd-daemon(3) describes
// (journald strips the prefix and stores the priority). A multi-line
// console message has the prefix on its first line only; JSON events are
// always one line.
type PriorityWriter struct {
	Out io.Writer
	// Console renders events in zerolog's console format, without colours
	// or timestamps (the journal has its own), instead of JSON.
	Console bool
}

// Priority is the syslog priority of a zerolog level, as sd-daemon(3)
// numbers them: SD_ERR is 3, SD_WARNING 4, SD_INFO 6, SD_DEBUG 7.
func Priority(l zerolog.Level) int {
	switch l {
	case zerolog.PanicLevel:
		return 0 // SD_EMERG
	case zerolog.FatalLevel:
		return 2 // SD_CRIT
	case zerolog.ErrorLevel:
		return 3
	case zerolog.WarnLevel:
		return 4
	case zerolog.DebugLevel, zerolog.TraceLevel:
		return 7
	default: // info, and events logged without a level
		return 6
	}
}

// Write writes an event whose level is unknown at info priority.
func (w *PriorityWriter) Write(p []byte) (int, error) {
	return w.WriteLevel(zerolog.NoLevel, p)
}

// WriteLevel writes one event with its priority prefix, in one write so
// that events of concurrent goroutines do not interleave.
func (w *PriorityWriter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>", Priority(l))
	if w.Console {
		cw := zerolog.ConsoleWriter{Out: &b, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}}
		if _, err := cw.Write(p); err != nil {
			return 0, err
		}
	} else {
		b.Write(p)
	}
	if _, err := w.Out.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}
