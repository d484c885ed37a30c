package kube_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/manifests/bench"
	"github.com/cuelet/cuelet/manifests/kube"
)

// opts admit the fixture's hostPath.
var opts = manifests.Options{AllowedHostPaths: []string{"/srv"}}

func load(t testing.TB, roots ...string) []*manifests.Unit {
	t.Helper()
	units, err := manifests.Load(context.Background(), roots, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		for _, p := range u.Problems {
			t.Fatalf("%s is invalid: %s", u.ID, p)
		}
	}
	return units
}

// sources are every example and the fixture that uses every field.
func sources(t testing.TB) map[string][]string {
	return map[string][]string{
		"examples": {"../examples"},
		"every":    {"testdata/every.cue"},
	}
}

func export(t testing.TB, units []*manifests.Unit) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := kube.Export(&buf, units); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExportDecodesStrictlyIntoTheKubernetesTypes(t *testing.T) {
	for name, roots := range sources(t) {
		t.Run(name, func(t *testing.T) {
			out := export(t, load(t, roots...))
			kinds := map[string]int{}
			for _, d := range bytes.Split(out, []byte("\n---\n")) {
				var meta struct{ Kind string }
				if err := yaml.Unmarshal(d, &meta); err != nil {
					t.Fatal(err)
				}
				var o any
				switch meta.Kind {
				case "Deployment":
					o = &appsv1.Deployment{}
				case "StatefulSet":
					o = &appsv1.StatefulSet{}
				case "Service":
					o = &corev1.Service{}
				case "ConfigMap":
					o = &corev1.ConfigMap{}
				case "EndpointSlice":
					o = &discoveryv1.EndpointSlice{}
				default:
					t.Fatalf("unexpected kind %q in\n%s", meta.Kind, d)
				}
				if err := yaml.UnmarshalStrict(d, o); err != nil {
					t.Errorf("%s does not decode strictly: %v\n%s", meta.Kind, err, d)
				}
				kinds[meta.Kind]++
			}
			want := map[string]map[string]int{
				"examples": {"Deployment": 1, "StatefulSet": 1, "Service": 3, "EndpointSlice": 1},
				"every":    {"Deployment": 1, "StatefulSet": 1, "Service": 3, "EndpointSlice": 3, "ConfigMap": 1},
			}[name]
			if !reflect.DeepEqual(kinds, want) {
				t.Errorf("kinds %v, want %v", kinds, want)
			}
		})
	}
}

func TestExportOfThePersistentPodIsAStatefulSetWithClaims(t *testing.T) {
	out := export(t, load(t, "testdata/every.cue"))
	var set appsv1.StatefulSet
	for _, d := range bytes.Split(out, []byte("\n---\n")) {
		if bytes.Contains(d, []byte("kind: StatefulSet")) {
			if err := yaml.UnmarshalStrict(d, &set); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := map[string]string{}
	for _, c := range set.Spec.VolumeClaimTemplates {
		q := c.Spec.Resources.Requests[corev1.ResourceStorage]
		got[c.Name] = fmt.Sprint(c.Spec.AccessModes, " ", q.String())
	}
	want := map[string]string{"data": "[ReadWriteOnce] 1Gi", "big": "[ReadWriteOnce] 20Gi"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("claims %v, want %v", got, want)
	}
	spec := set.Spec.Template.Spec
	if *spec.ShareProcessNamespace != true || set.Annotations[kube.AnnotationRestartPolicy] != "OnFailure" {
		t.Errorf("shareProcessNamespace %v, annotations %v", *spec.ShareProcessNamespace, set.Annotations)
	}
	if !bytes.Contains(out, []byte(`# restartPolicy "OnFailure": a StatefulSet runs only Always`)) {
		t.Errorf("no comment on the restart policy in\n%s", out)
	}
	var lim corev1.ResourceList
	for _, c := range spec.Containers {
		if c.Name == "main" {
			lim = c.Resources.Limits
		}
	}
	if lim.Cpu().String() != "1500m" || lim.Memory().String() != "1Gi" {
		t.Errorf("limits %v", lim)
	}
}

// roundTrip exports the units, imports the YAML, writes the CUE units into
// a folder and loads them again.
func roundTrip(t testing.TB, units []*manifests.Unit) []*manifests.Unit {
	t.Helper()
	res, err := kube.Import([]kube.Input{{Name: "export.yaml", Data: export(t, units)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range res.Unsupported {
		t.Errorf("export wrote what import does not take: %s", u)
	}
	dir := t.TempDir()
	for _, u := range res.Units {
		b, err := u.CUE()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, u.Package+".cue"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return load(t, dir)
}

func pods(units []*manifests.Unit) map[string]any {
	out := map[string]any{}
	for _, u := range units {
		for _, p := range u.Pods {
			out["pod "+p.Name] = p
		}
		for _, s := range u.Services {
			out["service "+s.Name] = s
		}
	}
	return out
}

func TestImportOfExportGivesBackTheUnits(t *testing.T) {
	gen := t.TempDir()
	if err := bench.Write(gen, 20); err != nil {
		t.Fatal(err)
	}
	all := sources(t)
	all["generated"] = []string{gen}
	for name, roots := range all {
		t.Run(name, func(t *testing.T) {
			before := load(t, roots...)
			after := roundTrip(t, before)
			if len(after) != len(before) {
				t.Errorf("%d units, want %d", len(after), len(before))
			}
			want, got := pods(before), pods(after)
			for k, w := range want {
				if !reflect.DeepEqual(got[k], w) {
					t.Errorf("%s:\n got %+v\nwant %+v", k, got[k], w)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("%s came from nowhere", k)
				}
			}
		})
	}
}

func TestTheFuzzSeedIsTheExportOfTheFixture(t *testing.T) {
	seed, err := os.ReadFile("testdata/every.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out := export(t, load(t, "testdata/every.cue")); !bytes.Equal(out, seed) {
		t.Errorf("testdata/every.yaml is not the export of testdata/every.cue; got\n%s", out)
	}
}

func TestImportReportsWhatCueletDoesNotModel(t *testing.T) {
	in, err := os.ReadFile("testdata/unsupported.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := kube.Import([]kube.Input{{Name: "unsupported.yaml", Data: in}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range res.Unsupported {
		got = append(got, u.String())
	}
	want, err := os.ReadFile("testdata/unsupported.txt")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "\n")+"\n" != string(want) {
		t.Errorf("reports:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
	roundTripValid(t, res)
}

// roundTripValid checks that the imported units validate.
func roundTripValid(t *testing.T, res kube.Result) {
	t.Helper()
	dir := t.TempDir()
	for _, u := range res.Units {
		b, err := u.CUE()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, u.Package+".cue"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(load(t, dir)) != len(res.Units) {
		t.Errorf("the units do not load as %d units", len(res.Units))
	}
}

func TestImportOfBadYAMLNamesTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"unclosed_quote", "kind: Pod\nmetadata:\n  name: \"web\n", "in.yaml:3: found unexpected end of stream"},
		{"bad_indentation", "kind: Pod\nmetadata:\n  name: web\n bad: x\n", "in.yaml:3: did not find expected key"},
		{"wrong_type", "kind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: many\n", "in.yaml:1: Deployment web: json: cannot unmarshal"},
		{"not_a_mapping", "- a\n- b\n", "in.yaml:1: a Kubernetes object is a mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kube.Import([]kube.Input{{Name: "in.yaml", Data: []byte(tc.in)}})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %v, want it to start with %q", err, tc.want)
			}
		})
	}
}

func FuzzImport(f *testing.F) {
	// Seeds from files: loading CUE in every fuzz worker is slow.
	for _, name := range []string{"testdata/every.yaml", "testdata/unsupported.yaml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("kind: Pod\n---\n---\nkind: [\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		res, err := kube.Import([]kube.Input{{Name: "f.yaml", Data: in}})
		if err != nil {
			return
		}
		for _, u := range res.Units {
			if _, err := u.CUE(); err != nil {
				t.Fatalf("unit %s: %v", u.Package, err)
			}
		}
	})
}

// An alias repeats a node written elsewhere: its unsupported fields are
// reported once, where they are written, and a document of nested aliases
// ("billion laughs") is not walked once per expansion.
func TestImportReportsAnAliasedNodeOnceWhereItIsWritten(t *testing.T) {
	in := `kind: Pod
metadata: {name: web}
spec:
  containers:
  - &c {name: a, image: busybox, tty: true}
  - *c
`
	res, err := kube.Import([]kube.Input{{Name: "in.yaml", Data: []byte(in)}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range res.Unsupported {
		got = append(got, u.String())
	}
	want := []string{"in.yaml:5: spec.containers[0].tty: not supported"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("reports %q, want %q", got, want)
	}
}
