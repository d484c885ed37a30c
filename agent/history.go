package agent

import (
	"errors"
	"strings"
	"time"

	"github.com/cuelet/cuelet/reconcile"
)

// maxEvents bounds the history: enough for the last hours of a node that
// changes now and then, small enough to send with every status request.
const maxEvents = 200

// history keeps the events of the recent passes, for `cuelet describe`:
// a report holds only its own pass's actions and errors, so a replica
// recreated an hour ago, or a problem met on every pass since, would be
// invisible in the report of a quiet pass. A problem met again is counted
// on its event, as Kubernetes counts repeated events, instead of filling
// the history with copies.
type history struct {
	events []Event
}

// record adds the pass's actions and errors at time now and returns the
// history, oldest first; the slice is the caller's.
func (h *history) record(rep *Report, now time.Time) []Event {
	for _, a := range rep.Actions {
		obj, name := actionObject(a)
		h.add(Event{Time: now, Type: "Normal", Object: obj, Name: name, Message: a})
	}
	for _, err := range rep.Errors {
		e := Event{Time: now, Type: "Warning", Message: err.Error()}
		if pe := (*reconcile.PodError)(nil); errors.As(err, &pe) {
			e.Object, e.Name = "pod", pe.Pod
		}
		h.repeat(e)
	}
	if n := len(h.events) - maxEvents; n > 0 {
		h.events = append([]Event(nil), h.events[n:]...)
	}
	return append([]Event(nil), h.events...)
}

func (h *history) add(e Event) {
	e.Count, e.LastTime = 1, e.Time
	h.events = append(h.events, e)
}

// repeat counts e on an earlier event with the same message about the
// same object, moved to the end as the latest; otherwise it adds e.
func (h *history) repeat(e Event) {
	for i, old := range h.events {
		if old.Type == e.Type && old.Object == e.Object && old.Name == e.Name && old.Message == e.Message {
			old.Count++
			old.LastTime = e.Time
			h.events = append(append(h.events[:i:i], h.events[i+1:]...), old)
			return
		}
	}
	h.add(e)
}

// actionObject reads what a plan line is about: its second and third
// words ("+ pod web-1 (…)", "~ service web (…)"), the form
// reconcile.Action.String and servicePlan give every line.
func actionObject(line string) (object, name string) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return "", ""
	}
	return f[1], f[2]
}
