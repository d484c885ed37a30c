package podman

import (
	"io"
	"maps"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"github.com/sirupsen/logrus"
)

// ForwardBindingsLog sends what the podman bindings (and the containers
// libraries under them) log through logrus's standard logger to log, at
// the same level and with their fields, instead of as logrus's own text
// in the middle of cuelet's JSON lines. logrus's standard logger is
// process-wide: call this once, at start, before the bindings are used.
func ForwardBindingsLog(log zerolog.Logger) {
	forwardLogrus(logrus.StandardLogger(), log)
}

func forwardLogrus(l *logrus.Logger, log zerolog.Logger) {
	l.SetOutput(io.Discard)
	l.SetLevel(logrusLevel(log.GetLevel()))
	l.ReplaceHooks(logrus.LevelHooks{})
	l.AddHook(logrusHook{log: log.With().Str("component", "podman-bindings").Logger()})
}

// logrusLevel is the logrus level that lets through what a zerolog logger
// at l would log, so that the bindings do not format lines nobody keeps,
// but never their debug lines: those are one line per HTTP request to
// podman ("DoRequest Method: GET URI: ..."), which would drown cuelet's
// own debug events (and logrus's default level, info, never showed them).
func logrusLevel(l zerolog.Level) logrus.Level {
	switch l {
	case zerolog.TraceLevel, zerolog.DebugLevel, zerolog.InfoLevel:
		return logrus.InfoLevel
	case zerolog.WarnLevel:
		return logrus.WarnLevel
	case zerolog.ErrorLevel:
		return logrus.ErrorLevel
	case zerolog.FatalLevel:
		return logrus.FatalLevel
	default: // panic, disabled
		return logrus.PanicLevel
	}
}

// logrusHook writes each logrus entry as a zerolog event.
type logrusHook struct{ log zerolog.Logger }

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	// WithLevel neither exits nor panics on fatal and panic levels: logrus
	// does that itself after its hooks ran.
	ev := h.log.WithLevel(zerologLevel(e.Level))
	// Sorted, so that the same entry always reads the same.
	for _, k := range slices.Sorted(maps.Keys(e.Data)) {
		switch v := e.Data[k].(type) {
		case error:
			ev = ev.AnErr(k, v)
		case time.Duration:
			ev = ev.Stringer(k, v)
		default:
			ev = ev.Interface(k, v)
		}
	}
	ev.Msg(e.Message)
	return nil
}

func zerologLevel(l logrus.Level) zerolog.Level {
	switch l {
	case logrus.PanicLevel:
		return zerolog.PanicLevel
	case logrus.FatalLevel:
		return zerolog.FatalLevel
	case logrus.ErrorLevel:
		return zerolog.ErrorLevel
	case logrus.WarnLevel:
		return zerolog.WarnLevel
	case logrus.InfoLevel:
		return zerolog.InfoLevel
	case logrus.DebugLevel:
		return zerolog.DebugLevel
	default:
		return zerolog.TraceLevel
	}
}
