package reconcile

import (
	"fmt"
	"path/filepath"

	"github.com/cuelet/cuelet/manifests"
)

// resolveHostPaths checks every hostPath mount of spec on its real path and
// mounts that path. podSpec checks the spelling only; a symbolic link below
// an allowed prefix (one a pod wrote into a writable hostPath, say) would
// otherwise let a pod mount any folder of the host. It runs each time a
// replica is created, so a link changed since the last pass is seen, and
// the resolved path is what podman binds: swapping the link later does not
// redirect a mount that was checked.
//
// What it cannot see is a folder of the resolved path replaced by a link
// between this check and podman's mount (or a restart of the container by
// podman, which binds the path again); the allowed prefixes must not be
// writable by the pods for that.
func resolveHostPaths(spec *PodSpec, allowed []string) error {
	var prefixes []string
	for _, pre := range allowed {
		// A prefix that does not exist holds no path; one that is a link
		// is compared by its target, as the paths are.
		if real, err := filepath.EvalSymlinks(pre); err == nil {
			prefixes = append(prefixes, real)
		}
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		for j := range c.Mounts {
			m := &c.Mounts[j]
			if !m.HostPath {
				continue
			}
			real, err := filepath.EvalSymlinks(m.Source)
			if err != nil {
				return fmt.Errorf("container %q: hostPath %s: %w", c.Name, m.Source, err)
			}
			if !manifests.UnderPrefix(real, prefixes) {
				return fmt.Errorf("container %q: hostPath %s resolves to %s: %w", c.Name, m.Source, real, ErrHostPathNotAllowed)
			}
			m.Source = real
		}
	}
	return nil
}
