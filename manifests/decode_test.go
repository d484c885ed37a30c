package manifests

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"cuelang.org/go/cue"

	"github.com/cuelet/cuelet/schema"
)

// decodeJSON is how units were decoded before decode walked the value: an
// export to JSON decoded with encoding/json. It stays here as the reference
// the walk must agree with, and as the baseline of BenchmarkDecode.
func decodeJSON(v cue.Value) (Manifest, error) {
	type rawPod struct {
		Pod
		Containers map[string]Container `json:"containers"`
		Volumes    map[string]Volume    `json:"volumes"`
	}
	var raw struct {
		Pods     map[string]rawPod  `json:"pods"`
		Services map[string]Service `json:"services"`
	}
	b, err := v.MarshalJSON()
	if err != nil {
		return Manifest{}, err
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Manifest{}, err
	}
	return fromRaw(raw.Pods, raw.Services, func(rp rawPod) (Pod, map[string]Container, map[string]Volume) {
		return rp.Pod, rp.Containers, rp.Volumes
	})
}

// decodeCUE is decodeJSON with cue.Value.Decode in place of the export.
func decodeCUE(v cue.Value) (Manifest, error) {
	type rawPod struct {
		Pod
		Containers map[string]Container `json:"containers"`
		Volumes    map[string]Volume    `json:"volumes"`
	}
	var raw struct {
		Pods     map[string]rawPod  `json:"pods"`
		Services map[string]Service `json:"services"`
	}
	if err := v.Decode(&raw); err != nil {
		return Manifest{}, err
	}
	return fromRaw(raw.Pods, raw.Services, func(rp rawPod) (Pod, map[string]Container, map[string]Volume) {
		return rp.Pod, rp.Containers, rp.Volumes
	})
}

func fromRaw[P any](pods map[string]P, services map[string]Service, split func(P) (Pod, map[string]Container, map[string]Volume)) (Manifest, error) {
	var m Manifest
	for _, name := range slices.Sorted(maps.Keys(pods)) {
		p, cs, vs := split(pods[name])
		p.Name = name
		for _, cn := range slices.Sorted(maps.Keys(cs)) {
			c := cs[cn]
			c.Name = cn
			if c.Resources.Memory != "" {
				n, err := ParseMemory(c.Resources.Memory)
				if err != nil {
					return Manifest{}, err
				}
				c.Resources.MemoryBytes = n
			}
			p.Containers = append(p.Containers, c)
		}
		for _, vn := range slices.Sorted(maps.Keys(vs)) {
			vol := vs[vn]
			vol.Name = vn
			p.Volumes = append(p.Volumes, vol)
		}
		m.Pods = append(m.Pods, p)
	}
	for _, name := range slices.Sorted(maps.Keys(services)) {
		s := services[name]
		s.Name = name
		m.Services = append(m.Services, s)
	}
	return m, nil
}

// decodeCorpus is every field of the model set at least once, with and
// without defaults, beside the examples.
const decodeCorpus = `
pods: a: {
	replicas: 3
	labels: {app: "a", "x.io/y": "z"}
	restartPolicy: "OnFailure"
	shareProcessNamespace: true
	nodeSelector: {"kubernetes.io/hostname": "n1", zone: "a"}
	terminationGracePeriodSeconds: 0
	progressDeadlineSeconds: 30
	dnsConfig: {nameservers: ["192.0.2.53"], searches: ["corp.example"], options: [{name: "ndots", value: "2"}, {name: "edns0"}]}
	containers: {
		web: {
			image: "busybox"
			imagePullPolicy: "Always"
			command: ["httpd"]
			args: []
			workingDir: "/srv"
			env: {A: "1", B: ""}
			ports: [{name: "http", containerPort: 8080}, {containerPort: 53, protocol: "UDP"}]
			volumeMounts: [{name: "data", mountPath: "/data", readOnly: true}, {name: "conf", mountPath: "/etc/x"}]
			resources: {memory: "1Gi", cpus: 2}
			readinessProbe: {exec: command: ["true", "x"], initialDelaySeconds: 1, periodSeconds: 2, timeoutSeconds: 3, successThreshold: 4, failureThreshold: 5}
		}
		b: {image: "b", resources: cpus: 0.25, readinessProbe: tcpSocket: port: 8080}
		c: {image: "c", env: {}, readinessProbe: httpGet: port: "http"}
		d: {image: "d", readinessProbe: httpGet: {path: "/ready", port: 81}}
	}
	volumes: {
		data: persistent: size: "2Gi"
		conf: files: {"a.conf": "x", "b": ""}
		h: hostPath: path: "/srv"
		e: emptyDir: {}
		p: persistent: {}
	}
}
pods: b: containers: app: image: "busybox"
pods: c: {dnsConfig: {}, nodeSelector: {}, containers: app: image: "busybox"}
services: {
	s1: {selector: {app: "a"}, portalIP: "10.96.0.9", sessionAffinity: "ClientIP", sessionAffinityTimeoutSeconds: 60,
		ports: [{name: "http", port: 80, targetPort: "http", externalPort: 30080}, {name: "dns", port: 53, protocol: "UDP", targetPort: 53}]}
	s2: {endpoints: ["db.local:5432"], ports: [{port: 5432}]}
}
`

func decodeInputs(t testing.TB) map[string][]schema.File {
	t.Helper()
	in := map[string][]schema.File{"corpus": {{Name: "corpus.cue", Data: []byte(decodeCorpus)}}}
	for i := range 3 {
		in[fmt.Sprint("bench-", i)] = []schema.File{{Name: "bench.cue", Data: fmt.Appendf(nil, benchUnit, i, 30000+i)}}
	}
	paths, _ := filepath.Glob("examples/*.cue")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		in[p] = []schema.File{{Name: p, Data: data}}
	}
	return in
}

func TestDecodeWalkingTheValueGivesWhatTheJSONRoundTripGave(t *testing.T) {
	c, err := schema.NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	for name, files := range decodeInputs(t) {
		t.Run(name, func(t *testing.T) {
			res := c.Check(files)
			if len(res.Issues) > 0 {
				t.Fatalf("issues: %v", res.Issues)
			}
			want, err := decodeJSON(res.Value)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decode(res.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				gj, _ := json.MarshalIndent(got, "", " ")
				wj, _ := json.MarshalIndent(want, "", " ")
				t.Errorf("walk:\n%+v\n%s\nJSON:\n%+v\n%s", got, gj, want, wj)
			}
		})
	}
}

// BenchmarkDecode compares the ways of turning a valid unit's value into
// the model, on a unit of the validate benchmark.
func BenchmarkDecode(b *testing.B) {
	c, err := schema.NewChecker()
	if err != nil {
		b.Fatal(err)
	}
	res := c.Check([]schema.File{{Name: "bench.cue", Data: fmt.Appendf(nil, benchUnit, 1, 30001)}})
	if len(res.Issues) > 0 {
		b.Fatal(res.Issues)
	}
	for _, d := range []struct {
		name string
		fn   func(cue.Value) (Manifest, error)
	}{{"walk", decode}, {"json", decodeJSON}, {"cue.Decode", decodeCUE}} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.fn(res.Value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchUnit is manifests/bench's unit, read from its file (that package
// imports this one, so its tests cannot import it).
var benchUnit = func() string {
	b, err := os.ReadFile("bench/unit.cue.tmpl")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func TestDecodeReportsTheFirstMemoryTooLargeByNameNotByPlaceInTheFile(t *testing.T) {
	c, err := schema.NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	res := c.Check([]schema.File{{Name: "u.cue", Data: []byte(`
pods: z: containers: app: {image: "x", resources: memory: "99999999999Ti"}
pods: a: containers: {
	y: {image: "x", resources: memory: "99999999999Ti"}
	b: {image: "x", resources: memory: "99999999999Ti"}
}
`)}})
	if len(res.Issues) > 0 {
		t.Fatal(res.Issues)
	}
	_, err = decode(res.Value)
	fe, ok := err.(*fieldError)
	if !ok {
		t.Fatalf("error %v is not a fieldError", err)
	}
	if want := []string{"pods", "a", "containers", "b", "resources", "memory"}; !reflect.DeepEqual(fe.path, want) {
		t.Fatalf("reported at %v, want %v", fe.path, want)
	}
}
