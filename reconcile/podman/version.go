package podman

import (
	"context"
	"time"

	"github.com/containers/podman/v4/pkg/bindings/system"
)

// ServerVersion is what the podman service says of itself: the Server part
// of `podman version`.
type ServerVersion struct {
	Version    string    `json:"version"`
	APIVersion string    `json:"apiVersion"`
	GoVersion  string    `json:"goVersion"`
	GitCommit  string    `json:"gitCommit,omitempty"`
	Built      time.Time `json:"built,omitzero"` // zero when podman's build does not say
	OSArch     string    `json:"osArch"`
}

// Version asks podman for its version, within CallTimeout. An unreachable
// or silent podman is an *UnavailableError.
func (c *Client) Version(ctx context.Context) (ServerVersion, error) {
	cctx, cancel, err := c.call(ctx, c.CallTimeout)
	defer cancel()
	if err != nil {
		return ServerVersion{}, err
	}
	rep, err := system.Version(cctx, nil)
	if err != nil {
		return ServerVersion{}, c.wrap(cctx, "version", err)
	}
	s := rep.Server
	v := ServerVersion{
		Version: s.Version, APIVersion: s.APIVersion, GoVersion: s.GoVersion,
		GitCommit: s.GitCommit, OSArch: s.OsArch,
	}
	if s.Built > 0 {
		v.Built = time.Unix(s.Built, 0).UTC()
	}
	return v, nil
}
