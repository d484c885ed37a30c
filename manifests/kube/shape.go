package kube

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A shape is the part of a Kubernetes object that cuelet models. Import
// walks each document against its kind's shape and reports every field
// outside it, so nothing is left out without a word. The converters read
// only what the shapes admit.
type shape struct {
	fields map[string]*shape // a mapping with these keys
	elem   *shape            // a sequence of these
	// ok, when set, admits only some values (a leaf shape admits any).
	ok func(n *yaml.Node) bool
}

// leaf admits any value, for maps of labels and plain scalars.
var leaf = &shape{}

func obj(fields map[string]*shape) *shape { return &shape{fields: fields} }
func list(elem *shape) *shape             { return &shape{elem: elem} }

// only admits the scalars given.
func only(values ...string) *shape {
	return &shape{ok: func(n *yaml.Node) bool {
		for _, v := range values {
			if n.Kind == yaml.ScalarNode && n.Value == v {
				return true
			}
		}
		return false
	}}
}

// Unsupported is a field or an object that import leaves out.
type Unsupported struct {
	File string
	Line int
	Path string
	// Why is empty for a field cuelet does not model at all.
	Why string
}

func (u Unsupported) String() string {
	if u.Why != "" {
		return fmt.Sprintf("%s:%d: %s: not supported: %s", u.File, u.Line, u.Path, u.Why)
	}
	return fmt.Sprintf("%s:%d: %s: not supported", u.File, u.Line, u.Path)
}

// walk reports the parts of n outside s. Empty values (null, "", false,
// {} and []) say nothing, as Kubernetes reads them as unset, and are not
// reported: kubectl and podman write many of them.
func walk(file string, n *yaml.Node, s *shape, path string, report func(Unsupported)) {
	if n.Kind == yaml.AliasNode {
		// The anchored node is walked where it stands; following aliases
		// would walk a "billion laughs" document for ever.
		return
	}
	if empty(n) {
		return
	}
	if s.ok != nil && !s.ok(n) {
		report(Unsupported{File: file, Line: n.Line, Path: path, Why: "value " + short(n)})
		return
	}
	switch {
	case s.fields != nil && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sub, ok := s.fields[k.Value]
			p := joinPath(path, k.Value)
			if !ok {
				if !empty(v) {
					report(Unsupported{File: file, Line: k.Line, Path: p})
				}
				continue
			}
			walk(file, v, sub, p, report)
		}
	case s.elem != nil && n.Kind == yaml.SequenceNode:
		for i, e := range n.Content {
			walk(file, e, s.elem, path+"["+strconv.Itoa(i)+"]", report)
		}
	}
}

func joinPath(path, key string) string {
	if strings.ContainsAny(key, "./") {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func empty(n *yaml.Node) bool {
	switch n.Kind {
	case yaml.MappingNode, yaml.SequenceNode:
		return len(n.Content) == 0
	case yaml.ScalarNode:
		return n.Tag == "!!null" || (n.Tag == "!!str" && n.Value == "") || (n.Tag == "!!bool" && n.Value == "false")
	}
	return false
}

func short(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return strconv.Quote(n.Value)
	}
	return "of this form"
}

// The shapes of the kinds import reads.
var (
	metaShape = obj(map[string]*shape{
		"name":   leaf,
		"labels": leaf,
		"annotations": obj(map[string]*shape{
			AnnotationUnit:             leaf,
			AnnotationRestartPolicy:    leaf,
			AnnotationProgressDeadline: leaf,
			AnnotationAffinityTimeout:  leaf,
		}),
	})
	probeShape = obj(map[string]*shape{
		"exec":      obj(map[string]*shape{"command": leaf}),
		"tcpSocket": obj(map[string]*shape{"port": leaf}),
		"httpGet": obj(map[string]*shape{
			"path":   leaf,
			"port":   leaf,
			"scheme": only("HTTP"),
		}),
		"initialDelaySeconds": leaf,
		"periodSeconds":       leaf,
		"timeoutSeconds":      leaf,
		"successThreshold":    leaf,
		"failureThreshold":    leaf,
	})
	protocolShape  = only("TCP", "UDP")
	containerShape = obj(map[string]*shape{
		"name":            leaf,
		"image":           leaf,
		"imagePullPolicy": leaf,
		"command":         leaf,
		"args":            leaf,
		"workingDir":      leaf,
		"env":             list(obj(map[string]*shape{"name": leaf, "value": leaf})),
		"ports": list(obj(map[string]*shape{
			"name":          leaf,
			"containerPort": leaf,
			"protocol":      protocolShape,
		})),
		"volumeMounts": list(obj(map[string]*shape{"name": leaf, "mountPath": leaf, "readOnly": leaf})),
		"resources": obj(map[string]*shape{
			"limits": obj(map[string]*shape{"memory": leaf, "cpu": leaf}),
		}),
		"readinessProbe": probeShape,
	})
	volumeShape = obj(map[string]*shape{
		"name":                  leaf,
		"emptyDir":              obj(map[string]*shape{}),
		"hostPath":              obj(map[string]*shape{"path": leaf}),
		"configMap":             obj(map[string]*shape{"name": leaf}),
		"persistentVolumeClaim": obj(map[string]*shape{"claimName": leaf}),
	})
	dnsConfigShape = obj(map[string]*shape{
		"nameservers": leaf,
		"searches":    leaf,
		"options":     list(obj(map[string]*shape{"name": leaf, "value": leaf})),
	})
	// podSpecShape: restartPolicy is admitted here for Pods; the
	// workloads' template takes only Always (see templateShape).
	podSpecShape = obj(map[string]*shape{
		"containers":                    list(containerShape),
		"volumes":                       list(volumeShape),
		"restartPolicy":                 leaf,
		"shareProcessNamespace":         leaf,
		"nodeSelector":                  leaf,
		"terminationGracePeriodSeconds": leaf,
		"dnsConfig":                     dnsConfigShape,
	})
	templateShape = obj(map[string]*shape{
		"metadata": obj(map[string]*shape{"labels": leaf}),
		"spec": obj(map[string]*shape{
			"containers":                    list(containerShape),
			"volumes":                       list(volumeShape),
			"restartPolicy":                 only("Always"),
			"shareProcessNamespace":         leaf,
			"nodeSelector":                  leaf,
			"terminationGracePeriodSeconds": leaf,
			"dnsConfig":                     dnsConfigShape,
		}),
	})
	selectorShape = obj(map[string]*shape{"matchLabels": leaf})
	claimSpec     = obj(map[string]*shape{
		"accessModes": list(only("ReadWriteOnce")),
		"resources":   obj(map[string]*shape{"requests": obj(map[string]*shape{"storage": leaf})}),
	})

	shapes = map[string]*shape{
		"Pod": obj(map[string]*shape{
			"apiVersion": leaf, "kind": leaf, "metadata": metaShape, "spec": podSpecShape,
		}),
		"Deployment": obj(map[string]*shape{
			"apiVersion": leaf, "kind": leaf, "metadata": metaShape,
			"spec": obj(map[string]*shape{"replicas": leaf, "selector": selectorShape, "template": templateShape, "progressDeadlineSeconds": leaf}),
		}),
		"StatefulSet": obj(map[string]*shape{
			"apiVersion": leaf, "kind": leaf, "metadata": metaShape,
			"spec": obj(map[string]*shape{
				"replicas": leaf, "selector": selectorShape, "template": templateShape,
				"volumeClaimTemplates": list(obj(map[string]*shape{
					"apiVersion": leaf, "kind": leaf,
					"metadata": obj(map[string]*shape{"name": leaf}),
					"spec":     claimSpec,
				})),
			}),
		}),
		"ConfigMap": obj(map[string]*shape{
			"apiVersion": leaf, "kind": leaf, "metadata": metaShape, "data": leaf,
		}),
		"PersistentVolumeClaim": obj(map[string]*shape{
			"apiVersion": leaf, "kind": leaf, "metadata": metaShape, "spec": claimSpec,
		}),
		"Service": obj(map[string]*shape{
			"apiVersion": leaf, "kind": leaf, "metadata": metaShape,
			"spec": obj(map[string]*shape{
				"type":            only("ClusterIP", "NodePort"),
				"selector":        leaf,
				"clusterIP":       leaf,
				"sessionAffinity": leaf,
				"sessionAffinityConfig": obj(map[string]*shape{
					"clientIP": obj(map[string]*shape{"timeoutSeconds": leaf}),
				}),
				"ports": list(obj(map[string]*shape{
					"name":       leaf,
					"protocol":   protocolShape,
					"port":       leaf,
					"targetPort": leaf,
					"nodePort":   leaf,
				})),
			}),
		}),
		"EndpointSlice": obj(map[string]*shape{
			"apiVersion": leaf, "kind": leaf,
			"metadata": obj(map[string]*shape{
				"name":        leaf,
				"labels":      obj(map[string]*shape{"kubernetes.io/service-name": leaf}),
				"annotations": obj(map[string]*shape{AnnotationUnit: leaf}),
			}),
			"addressType": leaf,
			"endpoints":   list(obj(map[string]*shape{"addresses": leaf})),
			"ports": list(obj(map[string]*shape{
				"name":     leaf,
				"port":     leaf,
				"protocol": protocolShape,
			})),
		}),
	}
)
