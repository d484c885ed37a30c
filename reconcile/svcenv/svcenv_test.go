package svcenv

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLines(t *testing.T) {
	redis := Service{
		Name:  "redis-primary",
		Host:  netip.MustParseAddr("10.96.0.11"),
		Ports: []Port{{Name: "redis", Protocol: "TCP", Port: 6379}},
	}
	tests := []struct {
		name     string
		services []Service
		want     []string
	}{
		{
			name: "no_services_give_no_variables",
		},
		{
			name:     "redis_primary_example_from_the_spec",
			services: []Service{redis},
			want: []string{
				"REDIS_PRIMARY_PORT=tcp://10.96.0.11:6379",
				"REDIS_PRIMARY_PORT_6379_TCP=tcp://10.96.0.11:6379",
				"REDIS_PRIMARY_PORT_6379_TCP_ADDR=10.96.0.11",
				"REDIS_PRIMARY_PORT_6379_TCP_PORT=6379",
				"REDIS_PRIMARY_PORT_6379_TCP_PROTO=tcp",
				"REDIS_PRIMARY_SERVICE_HOST=10.96.0.11",
				"REDIS_PRIMARY_SERVICE_PORT=6379",
				"REDIS_PRIMARY_SERVICE_PORT_REDIS=6379",
			},
		},
		{
			name: "unnamed_port_has_no_named_service_port_and_empty_protocol_is_tcp",
			services: []Service{{
				Name:  "web",
				Host:  netip.MustParseAddr("10.96.0.20"),
				Ports: []Port{{Port: 80}},
			}},
			want: []string{
				"WEB_PORT=tcp://10.96.0.20:80",
				"WEB_PORT_80_TCP=tcp://10.96.0.20:80",
				"WEB_PORT_80_TCP_ADDR=10.96.0.20",
				"WEB_PORT_80_TCP_PORT=80",
				"WEB_PORT_80_TCP_PROTO=tcp",
				"WEB_SERVICE_HOST=10.96.0.20",
				"WEB_SERVICE_PORT=80",
			},
		},
		{
			name: "first_port_is_service_port_and_port_and_udp_uses_udp_scheme",
			services: []Service{{
				Name: "dns-cache",
				Host: netip.MustParseAddr("10.96.0.10"),
				Ports: []Port{
					{Name: "dns-udp", Protocol: "UDP", Port: 53},
					{Name: "dns-tcp", Protocol: "TCP", Port: 53},
					{Name: "metrics", Protocol: "TCP", Port: 9153},
				},
			}},
			want: []string{
				"DNS_CACHE_PORT=udp://10.96.0.10:53",
				"DNS_CACHE_PORT_53_TCP=tcp://10.96.0.10:53",
				"DNS_CACHE_PORT_53_TCP_ADDR=10.96.0.10",
				"DNS_CACHE_PORT_53_TCP_PORT=53",
				"DNS_CACHE_PORT_53_TCP_PROTO=tcp",
				"DNS_CACHE_PORT_53_UDP=udp://10.96.0.10:53",
				"DNS_CACHE_PORT_53_UDP_ADDR=10.96.0.10",
				"DNS_CACHE_PORT_53_UDP_PORT=53",
				"DNS_CACHE_PORT_53_UDP_PROTO=udp",
				"DNS_CACHE_PORT_9153_TCP=tcp://10.96.0.10:9153",
				"DNS_CACHE_PORT_9153_TCP_ADDR=10.96.0.10",
				"DNS_CACHE_PORT_9153_TCP_PORT=9153",
				"DNS_CACHE_PORT_9153_TCP_PROTO=tcp",
				"DNS_CACHE_SERVICE_HOST=10.96.0.10",
				"DNS_CACHE_SERVICE_PORT=53",
				"DNS_CACHE_SERVICE_PORT_DNS_TCP=53",
				"DNS_CACHE_SERVICE_PORT_DNS_UDP=53",
				"DNS_CACHE_SERVICE_PORT_METRICS=9153",
			},
		},
		{
			name: "services_are_merged_and_sorted_whatever_their_order",
			services: []Service{
				{Name: "b", Host: netip.MustParseAddr("10.96.0.2"), Ports: []Port{{Port: 2}}},
				{Name: "a", Host: netip.MustParseAddr("10.96.0.1"), Ports: []Port{{Port: 1}}},
			},
			want: []string{
				"A_PORT=tcp://10.96.0.1:1",
				"A_PORT_1_TCP=tcp://10.96.0.1:1",
				"A_PORT_1_TCP_ADDR=10.96.0.1",
				"A_PORT_1_TCP_PORT=1",
				"A_PORT_1_TCP_PROTO=tcp",
				"A_SERVICE_HOST=10.96.0.1",
				"A_SERVICE_PORT=1",
				"B_PORT=tcp://10.96.0.2:2",
				"B_PORT_2_TCP=tcp://10.96.0.2:2",
				"B_PORT_2_TCP_ADDR=10.96.0.2",
				"B_PORT_2_TCP_PORT=2",
				"B_PORT_2_TCP_PROTO=tcp",
				"B_SERVICE_HOST=10.96.0.2",
				"B_SERVICE_PORT=2",
			},
		},
		{
			name: "service_without_portal_has_no_variables",
			services: []Service{
				{Name: "pending", Ports: []Port{{Port: 80}}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Lines(tt.services)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Lines() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			m := Map(tt.services)
			if len(m) != len(tt.want) {
				t.Errorf("Map() has %d variables, want %d", len(m), len(tt.want))
			}
			for _, l := range tt.want {
				k, v, _ := strings.Cut(l, "=")
				if m[k] != v {
					t.Errorf("Map()[%s] = %q, want %q", k, m[k], v)
				}
			}
		})
	}
}

func TestWriteFile(t *testing.T) {
	redis := Service{
		Name:  "redis-primary",
		Host:  netip.MustParseAddr("10.96.0.11"),
		Ports: []Port{{Name: "redis", Protocol: "TCP", Port: 6379}},
	}
	dir := filepath.Join(t.TempDir(), "pods", "web-1")

	t.Run("no_services_write_an_empty_file", func(t *testing.T) {
		if err := WriteFile(dir, nil); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "services.env"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("services.env = %q, want empty", got)
		}
	})

	t.Run("services_replace_the_file_with_sorted_lines", func(t *testing.T) {
		if err := WriteFile(dir, []Service{redis}); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "services.env"))
		if err != nil {
			t.Fatal(err)
		}
		want := "REDIS_PRIMARY_PORT=tcp://10.96.0.11:6379\n" +
			"REDIS_PRIMARY_PORT_6379_TCP=tcp://10.96.0.11:6379\n" +
			"REDIS_PRIMARY_PORT_6379_TCP_ADDR=10.96.0.11\n" +
			"REDIS_PRIMARY_PORT_6379_TCP_PORT=6379\n" +
			"REDIS_PRIMARY_PORT_6379_TCP_PROTO=tcp\n" +
			"REDIS_PRIMARY_SERVICE_HOST=10.96.0.11\n" +
			"REDIS_PRIMARY_SERVICE_PORT=6379\n" +
			"REDIS_PRIMARY_SERVICE_PORT_REDIS=6379\n"
		if string(got) != want {
			t.Errorf("services.env =\n%s\nwant\n%s", got, want)
		}
		fi, err := os.Stat(filepath.Join(dir, "services.env"))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o044 != 0o044 {
			t.Errorf("services.env mode %v, want readable by group and others (containers run as any user)", perm)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("folder holds %d entries, want only services.env (no temp files left)", len(entries))
		}
	})
}
