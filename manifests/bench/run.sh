#!/usr/bin/env bash
# Times `cuelet validate` against `cue vet` on the same 1,000 units and the
# same schema (`cuelet schema`). See README.md beside this script.
#
#   manifests/bench/run.sh            # needs hyperfine and cue v0.17.1
set -euo pipefail
# A fresh Debian machine has Go in /usr/local/go but not on PATH.
export PATH="$PATH:/usr/local/go/bin"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cue=${CUE:-$(command -v cue || echo "$(go env GOPATH)/bin/cue")}
if [[ ! -x $cue ]]; then
	echo "installing cue v0.17.1" >&2
	go install cuelang.org/go/cmd/cue@v0.17.1
	cue=$(go env GOPATH)/bin/cue
fi
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }

make -s -C "$repo" build
cp "$repo/bin/cuelet" "$work/cuelet"
# The bindings' build tags, as the Makefile sets them, for go run below.
export GOFLAGS="${GOFLAGS:-$(make -s -C "$repo" goflags)}"
(cd "$repo" && go run ./manifests/bench/gen -n "${UNITS:-1000}" -o "$work/units")

# cue vet takes -d only for data files, and package-less .cue files do not
# see each other's definitions, so cue vet gets the schema as cuelet prints
# it, without its package clause and with #Manifest embedded at the top
# level: one process unifies every unit with #Manifest, as cuelet does.
"$work/cuelet" schema | sed '/^package cuelet$/d' | awk '
	{ print }
	/^\)$/ && !done { print ""; print "#Manifest"; done = 1 }
' > "$work/cuelet-vet.cue"

# Both must accept the units before their times mean anything.
"$work/cuelet" validate "$work/units"
"$cue" vet -c "$work/cuelet-vet.cue" "$work"/units/*.cue

cd "$work"
hyperfine --warmup 1 --runs "${RUNS:-10}" --export-markdown "$work/result.md" \
	-n "cuelet validate" "./cuelet validate units" \
	-n "cue vet" "$cue vet -c cuelet-vet.cue units/*.cue"
cat "$work/result.md"
