#!/usr/bin/env bash
# Times `cuelet export` and `cuelet import` of 1,000 units against `cuelet
# validate` of the same units, measured in the same benchmark run
# (BenchmarkExportImport1000VsValidate in cmd/cuelet/cli: the three
# commands in-process, one after the other in each iteration). Runs it
# RUNS times (default 3) and prints each run, the medians, the ratios and
# the load average. Goal (issue 11): export and import under 1 s each.
#
#   manifests/kube/bench/run.sh        # or: make bench-export
set -euo pipefail
# A fresh Debian machine has Go in /usr/local/go but not on PATH.
export PATH="$PATH:/usr/local/go/bin"

repo=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$repo"
# The bindings' build tags, as the Makefile sets them.
export GOFLAGS="${GOFLAGS:-$(make -s goflags)}"

before=$(cut -d' ' -f1-3 /proc/loadavg)
out=$(go test -run '^$' -bench 'ExportImport1000VsValidate$' -benchtime "${BENCHTIME:-1x}" -count "${RUNS:-3}" ./cmd/cuelet/cli)
after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "$out" | grep '^Benchmark'
echo
echo "$out" | awk -v before="$before" -v after="$after" '
	# A result line: name, iterations, then value-unit pairs.
	/^Benchmark/ {
		runs++
		for (i = 3; i < NF; i += 2) { n[$(i+1)]++; v[$(i+1), n[$(i+1)]] = $i }
	}
	function median(unit,    k, i, j, t, a) {
		k = n[unit]
		for (i = 1; i <= k; i++) a[i] = v[unit, i]
		for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		return k % 2 ? a[(k+1)/2] : (a[k/2] + a[k/2+1]) / 2
	}
	END {
		if (!runs) { print "no benchmark result" > "/dev/stderr"; exit 1 }
		printf "medians of %d runs, 1,000 units (load average %s before, %s after)\n", runs, before, after
		# Under load the wall times stretch unevenly; the CPU times say
		# what each command costs, their ratio what export and import
		# cost against validate.
		vc = median("validate-cpu-ms/op")
		printf "%-10s %10s %10s %11s %10s\n", "", "wall ms", "CPU ms", "wall ratio", "CPU ratio"
		printf "%-10s %10.0f %10.0f %11s %10s\n", "validate", median("validate-ms/op"), vc, "peer", "peer"
		printf "%-10s %10.0f %10.0f %11.2f %10.2f\n", "export", median("export-ms/op"), median("export-cpu-ms/op"), median("export/validate"), median("export-cpu-ms/op") / vc
		printf "%-10s %10.0f %10.0f %11.2f %10.2f\n", "import", median("import-ms/op"), median("import-cpu-ms/op"), median("import/validate"), median("import-cpu-ms/op") / vc
		printf "goal, export and import under 1,000 ms wall: export %s, import %s\n",
			median("export-ms/op") < 1000 ? "met" : "NOT met", median("import-ms/op") < 1000 ? "met" : "NOT met"
	}'
