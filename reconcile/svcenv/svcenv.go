package svcenv

import (
	"cmp"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
)

// FileName is the name of the env file that WriteFile writes in a replica's
// folder; the folder, not the file, is what gets mounted into containers so
// that an atomic replace is seen inside them.
const FileName = "services.env"

// Service is what the variables of one service are made from.
type Service struct {
	Name  string     // DNS-1123 label, e.g. "redis-primary"
	Host  netip.Addr // the portal address; zero means "no variables"
	Ports []Port     // in manifest order: the first one is _SERVICE_PORT and _PORT
}

// Port is one port of a Service.
type Port struct {
	Name     string // may be empty when the service has a single port
	Protocol string // "TCP" (also when empty) or "UDP"
	Port     int
}

// Var is one variable.
type Var struct {
	Name  string
	Value string
}

// Vars returns the variables of all services, sorted by name. The result is
// the same whatever the order of services.
func Vars(services []Service) []Var {
	var vars []Var
	add := func(name, value string) { vars = append(vars, Var{name, value}) }
	for _, s := range services {
		if !s.Host.IsValid() || len(s.Ports) == 0 {
			continue
		}
		prefix := envName(s.Name)
		host := s.Host.String()
		add(prefix+"_SERVICE_HOST", host)
		add(prefix+"_SERVICE_PORT", strconv.Itoa(s.Ports[0].Port))
		for i, p := range s.Ports {
			port := strconv.Itoa(p.Port)
			if p.Name != "" {
				add(prefix+"_SERVICE_PORT_"+envName(p.Name), port)
			}
			proto := strings.ToLower(cmp.Or(p.Protocol, "TCP"))
			url := proto + "://" + netip.AddrPortFrom(s.Host, uint16(p.Port)).String()
			if i == 0 {
				add(prefix+"_PORT", url)
			}
			portPrefix := prefix + "_PORT_" + port + "_" + strings.ToUpper(proto)
			add(portPrefix, url)
			add(portPrefix+"_PROTO", proto)
			add(portPrefix+"_PORT", port)
			add(portPrefix+"_ADDR", host)
		}
	}
	// Sort by name, not by line: "A=" and "A0=" would otherwise swap places
	// depending on the byte after the name. Stable keeps the first of two
	// equal names first, which only matters for duplicate service names.
	slices.SortStableFunc(vars, func(a, b Var) int { return strings.Compare(a.Name, b.Name) })
	return vars
}

// Lines returns the variables as sorted "KEY=VALUE" strings, the form that
// container runtimes take.
func Lines(services []Service) []string {
	vars := Vars(services)
	lines := make([]string, len(vars))
	for i, v := range vars {
		lines[i] = v.Name + "=" + v.Value
	}
	return lines
}

// Map returns the variables as a map, for merging under a container's own
// env (which wins).
func Map(services []Service) map[string]string {
	vars := Vars(services)
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	return m
}

// Format returns the content of an env file: one sorted KEY=VALUE line per
// variable, each ending in a newline, and nothing at all without services.
// The values never need quoting (addresses, ports, URLs), so the file works
// with both `source` and `podman --env-file`.
func Format(services []Service) []byte {
	var b strings.Builder
	for _, l := range Lines(services) {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// WriteFile writes Format(services) to dir/services.env atomically (temp
// file, fsync, rename), creating dir if needed. A reader, inside a container
// or not, sees either the old or the new file, never a partial one.
func WriteFile(dir string, services []Service) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write service env file: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if err := renameio.WriteFile(path, Format(services), 0o644); err != nil {
		return fmt.Errorf("write service env file %s: %w", path, err)
	}
	return nil
}

// envName turns a service or port name into the form used in variable
// names, like the kubelet's makeEnvVariableName.
func envName(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}
