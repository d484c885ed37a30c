package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cuelet/cuelet/reconcile/podman"
)

// version is set at build time: -ldflags "-X github.com/cuelet/cuelet/cmd/cuelet/cli.version=v1.2.3".
// A link-time variable has to be a package variable.
var version string

// versionTimeout bounds the wait for podman's answer: a hung podman must
// not hang `cuelet version`, which people run to find out what is wrong.
const versionTimeout = 10 * time.Second

func versionCommand(env *Env) *cobra.Command {
	var (
		podmanURL string
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the versions of cuelet and of the podman it talks to",
		Long: `Print the versions of cuelet (Client) and of the podman service it talks
to (Server), as 'podman version' does. When podman does not answer, the
Client part is printed, then the error on stderr, and the exit code is 1.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client := clientVersion()
			ctx, cancel := context.WithTimeout(cmd.Context(), versionTimeout)
			defer cancel()
			pm := podman.New(podmanURL)
			pm.CallTimeout = versionTimeout
			server, err := pm.Version(ctx)
			if asJSON {
				out := struct {
					Client clientInfo            `json:"client"`
					Server *podman.ServerVersion `json:"server,omitempty"`
				}{Client: client}
				if err == nil {
					out.Server = &server
				}
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				printVersions(env.Stdout, client, server, err == nil)
			}
			return err
		},
	}
	fs := flagsOf(cmd)
	registerPodmanURL(fs, &podmanURL, env)
	fs.BoolVar(&asJSON, "json", false, "print the versions as JSON")
	return cmd
}

// clientInfo is the Client part of `cuelet version`.
type clientInfo struct {
	Version   string    `json:"version"`
	GoVersion string    `json:"goVersion"`
	GitCommit string    `json:"gitCommit,omitempty"`
	Built     time.Time `json:"built,omitzero"`
	OSArch    string    `json:"osArch"`
}

func clientVersion() clientInfo {
	c := clientInfo{Version: versionString(), GoVersion: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				c.GitCommit = s.Value
			case "vcs.time":
				c.Built, _ = time.Parse(time.RFC3339, s.Value)
			}
		}
	}
	return c
}

// printVersions writes the two parts the way `podman version` does, the
// server's only when podman answered.
func printVersions(w io.Writer, c clientInfo, s podman.ServerVersion, haveServer bool) {
	// Labels padded to 14 columns, as podman pads them.
	tw := tabwriter.NewWriter(w, 14, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "Client:\tcuelet")
	versionLines(tw, c.Version, "", c.GoVersion, c.GitCommit, c.Built, c.OSArch)
	if haveServer {
		tw.Flush() // the blank line between the parts has no padding
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "Server:\tPodman Engine")
		versionLines(tw, s.Version, s.APIVersion, s.GoVersion, s.GitCommit, s.Built, s.OSArch)
	}
	tw.Flush()
}

func versionLines(w io.Writer, version, api, goVersion, commit string, built time.Time, osArch string) {
	fmt.Fprintf(w, "Version:\t%s\n", version)
	if api != "" {
		fmt.Fprintf(w, "API Version:\t%s\n", api)
	}
	fmt.Fprintf(w, "Go Version:\t%s\n", goVersion)
	if commit != "" {
		fmt.Fprintf(w, "Git Commit:\t%s\n", commit)
	}
	if !built.IsZero() {
		fmt.Fprintf(w, "Built:\t%s\n", built.Format(time.ANSIC))
	}
	fmt.Fprintf(w, "OS/Arch:\t%s\n", osArch)
}

// versionString is the -X version, else what the Go toolchain recorded: the
// module version, or the VCS revision of a build from a checkout.
func versionString() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return "devel-" + rev + dirty
	}
	if v == "" {
		return "(devel)"
	}
	return v
}
