package agent

import (
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/cuelet/cuelet/manifests"
)

// effectiveUnit is a unit as the node applies it: the unit found on disk,
// or, when that one is invalid, its last known good version.
type effectiveUnit struct {
	found    *manifests.Unit // as loaded now; invalid or valid
	applied  *manifests.Unit // what is applied: found, a last good copy, or found (invalid) when there is none
	lastGood bool            // applied is a last good copy
}

// lastGoodSource is what desiredState needs of the last good store.
type lastGoodSource interface {
	Get(id string) (map[string][]byte, bool, error)
}

// desiredState puts every invalid unit's last known good version in its
// place (SPEC §3.2) and checks the cross-unit rules again over the result:
// a last good copy may define a name that another unit took meanwhile.
// When it does, both are wrong, as SPEC §2 says of any two units: the copy
// is dropped (its pods stay untouched, as for any invalid unit) and the
// other unit falls back to its own last good version in the next round.
// Each unit can only go valid → last good → plain invalid, so this ends.
// found must have been through manifests.CheckCrossUnit, as every load's
// units are: then, while no last good copy stands in, the applied units
// are found's valid ones, among which the rules found nothing, and the
// rules are not run again (2 ms of a pass with 1,000 units).
func desiredState(found []*manifests.Unit, lg lastGoodSource, opts manifests.Options, log zerolog.Logger) []*effectiveUnit {
	eff := make([]*effectiveUnit, len(found))
	for i, u := range found {
		eff[i] = &effectiveUnit{found: u, applied: u}
	}
	tried := map[string]bool{} // units whose last good copy was looked up
	for round := 0; round <= 2*len(eff)+1; round++ {
		for _, e := range eff {
			if e.applied.Valid() || tried[e.found.ID] || lg == nil {
				continue
			}
			tried[e.found.ID] = true
			if saved := loadLastGood(e.found.ID, lg, opts, log); saved != nil {
				e.applied, e.lastGood = saved, true
			}
		}
		if !slices.ContainsFunc(eff, func(e *effectiveUnit) bool { return e.lastGood }) {
			break
		}
		problems := manifests.CrossUnitProblems(appliedUnits(eff))
		if len(problems) == 0 {
			break
		}
		for _, e := range eff {
			ps := problems[e.applied]
			if len(ps) == 0 {
				continue
			}
			if e.lastGood {
				log.Warn().Str("unit", e.found.ID).Str("action", "last-good").
					Msg("last good version conflicts with another unit; its pods are kept but it is not applied")
				e.applied, e.lastGood = e.found, false
				continue
			}
			// A unit that was valid on its own is now in conflict with a
			// last good copy: it is invalid, with the problem to show.
			bad := e.found.Clone()
			bad.Problems = append(bad.Problems, ps...)
			bad.Pods, bad.Services = nil, nil
			e.found, e.applied = bad, bad
		}
	}
	return eff
}

// loadLastGood checks a unit's saved copy again; it was valid when saved,
// but the schema or the node's flags may have changed since.
func loadLastGood(id string, lg lastGoodSource, opts manifests.Options, log zerolog.Logger) *manifests.Unit {
	files, ok, err := lg.Get(id)
	if err != nil {
		log.Warn().Err(err).Str("unit", id).Str("action", "last-good").Msg("cannot read last good version")
		return nil
	}
	if !ok {
		return nil
	}
	u, err := manifests.LoadSource(id, files, opts)
	if err != nil || !u.Valid() {
		log.Warn().Str("unit", id).Str("action", "last-good").Msg("last good version no longer validates; not applied")
		return nil
	}
	return u
}

// appliedUnits are the units handed to the reconciler.
func appliedUnits(eff []*effectiveUnit) []*manifests.Unit {
	out := make([]*manifests.Unit, len(eff))
	for i, e := range eff {
		out[i] = e.applied
	}
	return out
}

// unitStatuses are the units as `cuelet status` shows them.
func unitStatuses(eff []*effectiveUnit) []UnitStatus {
	out := make([]UnitStatus, 0, len(eff))
	for _, e := range eff {
		s := UnitStatus{ID: e.found.ID, Valid: e.found.Valid(), LastGood: e.lastGood, Problems: slices.Clone(e.found.Problems)}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b UnitStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}
