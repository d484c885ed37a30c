// Package bench holds the validate benchmark: 1,000 units, each a pod
// with two containers and a service, in one folder (see docs/performance.md).
package bench

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write writes n units into dir, one file each, without a package clause
// (so that each file is a unit of its own).
func Write(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range n {
		name := filepath.Join(dir, fmt.Sprintf("unit-%04d.cue", i))
		if err := os.WriteFile(name, fmt.Appendf(nil, unit, i, 30000+i), 0o644); err != nil {
			return err
		}
	}
	return nil
}

const unit = `// Unit %[1]d of the validate benchmark.

pods: "app-%[1]d": {
	replicas: 2
	labels: {app: "app-%[1]d", tier: "web"}
	containers: {
		web: {
			image: "localhost/cuelet-busybox:latest"
			command: ["httpd", "-f", "-p", "8080"]
			env: {LOG_LEVEL: "info", UNIT: "%[1]d"}
			ports: [{name: "http", containerPort: 8080}]
			volumeMounts: [{name: "logs", mountPath: "/logs"}]
			resources: {memory: "64Mi", cpus: 0.5}
			readinessProbe: {httpGet: {path: "/", port: "http"}, periodSeconds: 5}
		}
		shipper: {
			image: "localhost/cuelet-busybox:latest"
			command: ["sh", "-c", "tail -F /logs/access.log"]
			volumeMounts: [{name: "logs", mountPath: "/logs", readOnly: true}]
		}
	}
	volumes: logs: emptyDir: {}
}

services: "app-%[1]d": {
	selector: app: "app-%[1]d"
	ports: [{name: "http", port: 80, targetPort: "http", externalPort: %[2]d}]
}
`
