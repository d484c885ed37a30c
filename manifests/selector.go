package manifests

// Selects reports whether a service's selector picks a pod with these
// labels: every label of the selector is among the pod's, with the same
// value, as in Kubernetes.
//
// An empty selector picks nothing. The schema refuses an empty selector
// (SPEC §2: a service has either a non-empty selector or fixed endpoints),
// so the only service without one is a service with fixed endpoints, which
// is Kubernetes' "service without a selector": its endpoints are the fixed
// ones, never every pod. Answering false here keeps that true for any
// caller, validated input or not.
func Selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if l, ok := labels[k]; !ok || l != v {
			return false
		}
	}
	return true
}
