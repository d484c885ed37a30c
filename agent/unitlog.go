package agent

import (
	"slices"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests"
)

// unitLog logs the problems of invalid units when they change (SPEC §9):
// one event per problem line when a unit becomes invalid or its problems
// change, none on the passes in between, and one when it is valid again.
// An invalid unit is otherwise silent: it keeps its last good state, so
// nothing else in the log says why an edit did not take effect.
type unitLog struct {
	logged map[string][]manifests.Problem // unit ID → the problems last logged
}

func (l *unitLog) update(units []UnitStatus, log zerolog.Logger) {
	seen := make(map[string][]manifests.Problem, len(units))
	for _, u := range units {
		was := l.logged[u.ID]
		seen[u.ID] = u.Problems
		if slices.Equal(was, u.Problems) {
			continue
		}
		if len(u.Problems) == 0 {
			if len(was) > 0 {
				log.Info().Str("unit", u.ID).Str("action", "validate").Msg("unit valid again")
			}
			continue
		}
		for _, p := range u.Problems {
			log.Warn().Str("unit", u.ID).Str("action", "validate").Bool("lastGood", u.LastGood).Str("error", p.String()).
				Msg("unit invalid; its last applied state is kept")
		}
	}
	// Units that are gone are forgotten: if one comes back invalid, that
	// is news again.
	l.logged = seen
}
