package manifests

import "strconv"

// ReplicaName is the name of replica i of a pod: replica 0 carries the pod's
// own name, so scaling 1→2 keeps the running pod and adds "<pod>-1".
func ReplicaName(pod string, i int) string {
	if i == 0 {
		return pod
	}
	return pod + "-" + strconv.Itoa(i)
}

// Replica is one running copy of a pod definition.
type Replica struct {
	Name  string // podman pod name, see ReplicaName
	Index int
	Unit  string // ID of the unit that defines the pod
	Pod   *Pod
}

// ReplicaList expands a pod into its replicas, lowest index first.
func (p *Pod) ReplicaList(unit string) []Replica {
	out := make([]Replica, 0, p.Replicas)
	for i := 0; i < p.Replicas; i++ {
		out = append(out, Replica{Name: ReplicaName(p.Name, i), Index: i, Unit: unit, Pod: p})
	}
	return out
}
