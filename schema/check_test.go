package schema_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cuelet/cuelet/schema"
)

// pod and service wrap a body into a minimal valid manifest around it, so
// that each case shows only the rule it is about. Positions in the wants
// count the wrapper's lines: the body starts on line 2.
func pod(body string) string {
	return "pods: web: {\n" + body + "\n}\n"
}

func container(body string) string {
	return pod("containers: app: {\n" + body + "\n}")
}

// issues checks one file and formats its issues as LINE:COL: PATH: MESSAGE.
func issues(t *testing.T, src string) []string {
	t.Helper()
	c, err := schema.NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	res := c.Check([]schema.File{{Name: "t.cue", Data: []byte(src)}})
	var out []string
	for _, is := range res.Issues {
		if is.Pos.Filename != "t.cue" {
			t.Errorf("issue in file %q, not the user's: %v", is.Pos.Filename, is)
		}
		out = append(out, fmt.Sprintf("%d:%d: %s: %s", is.Pos.Line, is.Pos.Column, is.Path, is.Message))
	}
	return out
}

// quickAgrees checks that Check's quick way for valid units (the schema
// without its rules, the rules in Go) accepts src exactly when the whole
// schema does: passing a unit that breaks a rule would hide the problem.
func quickAgrees(t *testing.T, src string, valid bool) {
	t.Helper()
	c, err := schema.NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	ok, err := schema.QuickAccepts(c, src)
	if err != nil {
		return // a syntax error never gets that far
	}
	if ok != valid {
		t.Errorf("the quick way accepts %v, the schema %v:\n%s", ok, valid, src)
	}
}

func TestSchemaRules(t *testing.T) {
	const img = `image: "busybox"`
	tests := []struct {
		name string
		src  string
		want []string
	}{
		// Names.
		{"pod_name_is_a_dns_label", "pods: \"web-1\": containers: app: image: \"x\"\n", nil},
		{"pod_name_with_capitals_is_rejected_at_the_name", "pods: Web: containers: app: image: \"x\"\n", []string{
			`1:7: pods.Web: "Web" is not a valid name: must be lowercase letters, digits and '-', starting and ending with a letter or digit`}},
		{"pod_name_longer_than_63_is_rejected", "pods: " + strings.Repeat("a", 64) + ": containers: app: image: \"x\"\n", []string{
			`1:7: pods.` + strings.Repeat("a", 64) + `: "` + strings.Repeat("a", 64) + `" is too long: at most 63 characters`}},
		{"container_name_ending_in_a_dash_is_rejected", "pods: web: containers: \"app-\": image: \"x\"\n", []string{
			`1:24: pods.web.containers.app-: "app-" is not a valid name: must be lowercase letters, digits and '-', starting and ending with a letter or digit`}},
		{"volume_name_with_an_underscore_is_rejected", pod("containers: app: " + img + "\nvolumes: my_data: emptyDir: {}"), []string{
			`3:10: pods.web.volumes.my_data: "my_data" is not a valid name: must be lowercase letters, digits and '-', starting and ending with a letter or digit`}},
		{"service_name_with_a_dot_is_rejected", "services: \"a.b\": {selector: app: \"a\", ports: [{port: 80}]}\n", []string{
			`1:11: services."a.b": "a.b" is not a valid name: must be lowercase letters, digits and '-', starting and ending with a letter or digit`}},
		{"port_name_of_15_characters_is_valid", container(img + "\nports: [{name: \"" + strings.Repeat("p", 15) + "\", containerPort: 80}]"), nil},
		{"port_name_of_16_characters_is_rejected", container(img + "\nports: [{name: \"" + strings.Repeat("p", 16) + "\", containerPort: 80}]"), []string{
			`4:16: pods.web.containers.app.ports.0.name: "` + strings.Repeat("p", 16) + `" is too long: at most 15 characters`}},
		{"env_names_may_have_capitals_and_underscores", container(img + "\nenv: {LOG_LEVEL: \"info\", _x1: \"y\"}"), nil},
		{"env_name_starting_with_a_digit_is_rejected", container(img + "\nenv: {\"1X\": \"a\"}"), []string{
			`4:7: pods.web.containers.app.env.1X: "1X" is not a valid environment variable name: must be letters, digits and '_', not starting with a digit`}},
		{"env_value_must_be_a_string", container(img + "\nenv: {N: 1}"), []string{
			`4:10: pods.web.containers.app.env.N: 1 is not a string`}},

		// Pods.
		{"pod_without_containers_is_rejected_at_the_pod", "pods: web: {}\n", []string{
			`1:7: pods.web: a pod needs at least one container`}},
		{"pod_with_empty_containers_is_rejected_at_the_pod", "pods: web: containers: {}\n", []string{
			`1:7: pods.web: a pod needs at least one container`}},
		{"replicas_may_be_0", pod("replicas: 0\ncontainers: app: " + img), nil},
		{"replicas_above_100_is_rejected_at_the_value", pod("replicas: 200\ncontainers: app: " + img), []string{
			`2:11: pods.web.replicas: 200 is above the maximum 100`}},
		{"negative_replicas_is_rejected", pod("replicas: -1\ncontainers: app: " + img), []string{
			`2:11: pods.web.replicas: -1 is below the minimum 0`}},
		{"replicas_as_a_string_is_rejected", pod("replicas: \"two\"\ncontainers: app: " + img), []string{
			`2:11: pods.web.replicas: "two" is not an integer`}},
		{"replicas_as_a_float_is_rejected", pod("replicas: 2.5\ncontainers: app: " + img), []string{
			`2:11: pods.web.replicas: 2.5 is not an integer`}},
		{"restart_policy_must_be_one_of_three", pod("restartPolicy: \"Sometimes\"\ncontainers: app: " + img), []string{
			`2:16: pods.web.restartPolicy: "Sometimes" is not one of "Always", "Never", "OnFailure"`}},
		{"restart_policy_never_is_valid", pod("restartPolicy: \"Never\"\ncontainers: app: " + img), nil},
		{"misspelt_field_is_rejected_with_a_suggestion", pod("replica: 2\ncontainers: app: " + img), []string{
			`2:1: pods.web.replica: field "replica" is not allowed (did you mean "replicas"?)`}},
		{"unknown_field_far_from_any_is_rejected_without_a_suggestion", pod("colour: \"blue\"\ncontainers: app: " + img), []string{
			`2:1: pods.web.colour: field "colour" is not allowed`}},
		{"misspelt_field_is_reported_next_to_other_problems", pod("replica: 2\ncontainers: app: {}"), []string{
			`2:1: pods.web.replica: field "replica" is not allowed (did you mean "replicas"?)`,
			`3:13: pods.web.containers.app.image: image is required`}},
		{"unknown_top_level_field_is_rejected", "pod: web: containers: app: image: \"x\"\n", []string{
			`1:1: pod: field "pod" is not allowed (did you mean "pods"?)`}},

		// Containers.
		{"missing_image_is_reported_at_the_container", container("imagePullPolicy: \"Always\""), []string{
			`2:13: pods.web.containers.app.image: image is required`}},
		{"empty_image_is_rejected_at_the_value", container(`image: ""`), []string{
			`3:8: pods.web.containers.app.image: image must not be empty`}},
		{"image_pull_policy_must_be_one_of_three", container(img + "\nimagePullPolicy: \"Sometimes\""), []string{
			`4:18: pods.web.containers.app.imagePullPolicy: "Sometimes" is not one of "Always", "IfNotPresent", "Never"`}},
		{"container_port_0_is_rejected", container(img + "\nports: [{containerPort: 0}]"), []string{
			`4:25: pods.web.containers.app.ports.0.containerPort: 0 is below the minimum 1`}},
		{"container_port_65536_is_rejected", container(img + "\nports: [{containerPort: 65536}]"), []string{
			`4:25: pods.web.containers.app.ports.0.containerPort: 65536 is above the maximum 65535`}},
		{"protocol_must_be_tcp_or_udp", container(img + "\nports: [{containerPort: 53, protocol: \"SCTP\"}]"), []string{
			`4:39: pods.web.containers.app.ports.0.protocol: "SCTP" is not one of "TCP", "UDP"`}},
		{"udp_port_is_valid", container(img + "\nports: [{containerPort: 53, protocol: \"UDP\"}]"), nil},
		{"cpus_may_be_an_integer", container(img + "\nresources: cpus: 2"), nil},
		{"cpus_0_is_rejected", container(img + "\nresources: cpus: 0"), []string{
			`4:18: pods.web.containers.app.resources.cpus: 0 must be greater than 0`}},
		{"memory_with_a_binary_suffix_is_valid", container(img + "\nresources: memory: \"256Mi\""), nil},
		{"memory_with_an_unknown_suffix_is_rejected", container(img + "\nresources: memory: \"1Q\""), []string{
			`4:20: pods.web.containers.app.resources.memory: "1Q" is not a valid memory quantity: must be a whole number of bytes, optionally with a suffix Ki, Mi, Gi, Ti, k, M, G or T`}},

		// Volumes and mounts.
		{"volume_mount_naming_a_volume_of_the_pod_is_valid", pod("containers: app: {" + img + ", volumeMounts: [{name: \"logs\", mountPath: \"/logs\"}]}\nvolumes: logs: emptyDir: {}"), nil},
		{"volume_mount_naming_no_volume_is_rejected_at_the_name", pod("containers: app: {" + img + ", volumeMounts: [{name: \"logz\", mountPath: \"/logs\"}]}\nvolumes: logs: emptyDir: {}"), []string{
			`2:59: pods.web.containers.app.volumeMounts.0.name: the pod has no volume of this name`}},
		{"mount_path_must_be_absolute", pod("containers: app: {" + img + ", volumeMounts: [{name: \"logs\", mountPath: \"logs\"}]}\nvolumes: logs: emptyDir: {}"), []string{
			`2:78: pods.web.containers.app.volumeMounts.0.mountPath: "logs" is not an absolute path`}},
		{"volume_with_two_sources_is_rejected_at_the_volume", pod("containers: app: " + img + "\nvolumes: v: {emptyDir: {}, persistent: {}}"), []string{
			`3:10: pods.web.volumes.v: a volume names exactly one of emptyDir, persistent, hostPath and files`}},
		{"volume_without_a_source_is_rejected", pod("containers: app: " + img + "\nvolumes: v: {}"), []string{
			`3:10: pods.web.volumes.v: a volume names exactly one of emptyDir, persistent, hostPath and files`}},
		{"files_volume_is_valid", pod("containers: app: " + img + "\nvolumes: conf: files: {\"app.conf\": \"listen 80\\n\"}"), nil},
		{"files_volume_file_name_with_a_slash_is_rejected_at_the_name", pod("containers: app: " + img + "\nvolumes: conf: files: {\"../../x\": \"y\"}"), []string{
			`3:24: pods.web.volumes.conf.files."../../x": "../../x" is not a valid file name: must not be empty, ".", ".." or contain '/'`}},
		{"files_volume_file_name_dot_dot_is_rejected", pod("containers: app: " + img + "\nvolumes: conf: files: {\"..\": \"y\"}"), []string{
			`3:24: pods.web.volumes.conf.files."..": ".." is not a valid file name: must not be empty, ".", ".." or contain '/'`}},
		{"files_volume_file_name_dot_is_rejected", pod("containers: app: " + img + "\nvolumes: conf: files: {\".\": \"y\"}"), []string{
			`3:24: pods.web.volumes.conf.files.".": "." is not a valid file name: must not be empty, ".", ".." or contain '/'`}},
		{"files_volume_empty_file_name_is_rejected", pod("containers: app: " + img + "\nvolumes: conf: files: {\"\": \"y\"}"), []string{
			`3:24: pods.web.volumes.conf.files."": "" is not a valid file name: must not be empty, ".", ".." or contain '/'`}},
		{"files_volume_file_name_starting_with_a_dot_is_valid", pod("containers: app: " + img + "\nvolumes: conf: files: {\".env\": \"y\", \"..x\": \"z\"}"), nil},
		{"host_path_must_be_absolute", pod("containers: app: " + img + "\nvolumes: site: hostPath: path: \"srv\""), []string{
			`3:32: pods.web.volumes.site.hostPath.path: "srv" is not an absolute path`}},

		// Probes.
		{"probe_with_http_get_is_valid", container(img + "\nreadinessProbe: httpGet: port: 80"), nil},
		{"probe_with_two_actions_is_rejected_at_the_probe", container(img + "\nreadinessProbe: {exec: command: [\"true\"], tcpSocket: port: 80}"), []string{
			`4:1: pods.web.containers.app.readinessProbe: a probe names exactly one of exec, tcpSocket and httpGet`}},
		{"probe_without_an_action_is_rejected", container(img + "\nreadinessProbe: periodSeconds: 5"), []string{
			`4:1: pods.web.containers.app.readinessProbe: a probe names exactly one of exec, tcpSocket and httpGet`}},
		{"probe_period_0_is_rejected", container(img + "\nreadinessProbe: {tcpSocket: port: 80, periodSeconds: 0}"), []string{
			`4:54: pods.web.containers.app.readinessProbe.periodSeconds: 0 is below the minimum 1`}},
		{"probe_port_by_an_invalid_name_is_rejected", container(img + "\nreadinessProbe: tcpSocket: port: \"HTTP\""), []string{
			`4:34: pods.web.containers.app.readinessProbe.tcpSocket.port: "HTTP" is not a valid name: must be lowercase letters, digits and '-', starting and ending with a letter or digit`}},
		{"exec_probe_needs_a_command", container(img + "\nreadinessProbe: exec: command: []"), []string{
			`4:32: pods.web.containers.app.readinessProbe.exec.command: command must not be empty`}},

		// Services.
		{"service_with_a_selector_is_valid", "services: web: {selector: app: \"web\", ports: [{port: 80}]}\n", nil},
		{"service_with_endpoints_is_valid", "services: db: {endpoints: [\"192.0.2.1:5432\"], ports: [{port: 5432}]}\n", nil},
		{"service_with_selector_and_endpoints_is_rejected_at_the_service", "services: db: {\n\tselector: app: \"db\"\n\tendpoints: [\"192.0.2.1:5432\"]\n\tports: [{port: 5432}]\n}\n", []string{
			`1:11: services.db: a service has either selector or endpoints, not both`}},
		{"service_with_neither_selector_nor_endpoints_is_rejected", "services: db: ports: [{port: 5432}]\n", []string{
			`1:11: services.db: a service needs either selector or endpoints`}},
		{"empty_selector_is_rejected", "services: db: {selector: {}, ports: [{port: 5432}]}\n", []string{
			`1:11: services.db: selector must not be empty`}},
		{"endpoint_must_be_host_and_port", "services: db: {endpoints: [\"db.example\"], ports: [{port: 5432}]}\n", []string{
			`1:28: services.db.endpoints.0: "db.example" is not a valid endpoint: must be HOST:PORT`}},
		{"service_with_endpoints_and_two_ports_is_rejected", "services: db: {endpoints: [\"192.0.2.1:5432\"], ports: [{name: \"a\", port: 1}, {name: \"b\", port: 2}]}\n", []string{
			`1:11: services.db: a service with endpoints has exactly one port`}},
		{"service_without_ports_is_rejected_at_the_service", "services: web: selector: app: \"web\"\n", []string{
			`1:11: services.web.ports: ports is required`}},
		{"service_with_empty_ports_is_rejected_at_the_service", "services: web: {selector: app: \"web\", ports: []}\n", []string{
			`1:11: services.web: a service needs at least one port`}},
		{"service_with_two_named_ports_is_valid", "services: web: {selector: app: \"web\", ports: [{name: \"http\", port: 80}, {name: \"https\", port: 443}]}\n", nil},
		{"service_with_two_ports_needs_every_port_named", "services: web: {selector: app: \"web\", ports: [{name: \"http\", port: 80}, {port: 443}]}\n", []string{
			`1:73: services.web.ports.1: a service with more than one port names every port`}},
		{"service_port_above_65535_is_rejected", "services: web: {selector: app: \"web\", ports: [{port: 70000}]}\n", []string{
			`1:54: services.web.ports.0.port: 70000 is above the maximum 65535`}},
		{"target_port_by_number_is_valid", "services: web: {selector: app: \"web\", ports: [{port: 80, targetPort: 8080}]}\n", nil},
		{"target_port_by_name_is_valid", "services: web: {selector: app: \"web\", ports: [{port: 80, targetPort: \"http\"}]}\n", nil},
		{"target_port_by_an_invalid_name_is_rejected", "services: web: {selector: app: \"web\", ports: [{port: 80, targetPort: \"Http\"}]}\n", []string{
			`1:70: services.web.ports.0.targetPort: "Http" is not a valid name: must be lowercase letters, digits and '-', starting and ending with a letter or digit`}},
		{"target_port_0_is_rejected", "services: web: {selector: app: \"web\", ports: [{port: 80, targetPort: 0}]}\n", []string{
			`1:70: services.web.ports.0.targetPort: 0 is below the minimum 1`}},
		{"external_port_0_is_rejected", "services: web: {selector: app: \"web\", ports: [{port: 80, externalPort: 0}]}\n", []string{
			`1:72: services.web.ports.0.externalPort: 0 is below the minimum 1`}},
		{"portal_ip_must_be_ipv4", "services: web: {selector: app: \"web\", portalIP: \"fe80::1\", ports: [{port: 80}]}\n", []string{
			`1:49: services.web.portalIP: "fe80::1" is not an IPv4 address`}},
		{"portal_ip_with_a_large_octet_is_rejected", "services: web: {selector: app: \"web\", portalIP: \"10.96.0.300\", ports: [{port: 80}]}\n", []string{
			`1:49: services.web.portalIP: "10.96.0.300" is not an IPv4 address`}},
		{"session_affinity_must_be_none_or_client_ip", "services: web: {selector: app: \"web\", sessionAffinity: \"Sticky\", ports: [{port: 80}]}\n", []string{
			`1:56: services.web.sessionAffinity: "Sticky" is not one of "ClientIP", "None"`}},
		{"session_affinity_timeout_above_a_day_is_rejected", "services: web: {selector: app: \"web\", sessionAffinityTimeoutSeconds: 86401, ports: [{port: 80}]}\n", []string{
			`1:70: services.web.sessionAffinityTimeoutSeconds: 86401 is above the maximum 86400`}},

		// Reporting.
		{"syntax_error_is_reported_at_its_position", "pods: web: {\n", []string{
			`1:14: : expected '}', found 'EOF'`}},
		{"import_outside_the_standard_library_is_rejected_once", "import \"example.com/foo\"\n\npods: web: containers: app: image: foo.image\n", []string{
			`1:8: : import "example.com/foo" is not available: a manifest may import only CUE's standard library`}},
		{"import_of_the_standard_library_is_valid", "import \"strings\"\n\npods: web: containers: app: image: strings.ToLower(\"X\")\n", nil},
		{"empty_endpoints_are_rejected", "services: db: {endpoints: [], ports: [{port: 5432}]}\n", []string{
			`1:11: services.db: endpoints must not be empty`}},
		{"volume_mount_in_a_pod_without_volumes_is_rejected", pod("containers: app: {" + img + ", volumeMounts: [{name: \"logs\", mountPath: \"/logs\"}]}"), []string{
			`2:59: pods.web.containers.app.volumeMounts.0.name: the pod has no volume of this name`}},
		{"top_level_let_and_hidden_fields_are_valid", "let img = \"x\"\n_name: \"web\"\npods: (_name): containers: app: image: img\n", nil},
		{"file_defining_its_own_manifest_is_checked_against_the_schema", "#Manifest: {}\npods: web: containers: app: {}\n", []string{
			`2:24: pods.web.containers.app.image: image is required`}},
		{"problems_come_sorted_by_position", "services: web: {selector: app: \"web\", ports: [{port: 0}]}\n" + pod("replicas: 101\ncontainers: app: {}"), []string{
			`1:54: services.web.ports.0.port: 0 is below the minimum 1`,
			`3:11: pods.web.replicas: 101 is above the maximum 100`,
			`4:13: pods.web.containers.app.image: image is required`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := issues(t, tt.src)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("source:\n%s\ngot:\n%s\nwant:\n%s", tt.src, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			quickAgrees(t, tt.src, tt.want == nil)
		})
	}
}
