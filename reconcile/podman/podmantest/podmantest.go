package podmantest

import (
	"archive/tar"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cuelet/cuelet/netproxy/slotlock"
	"github.com/cuelet/cuelet/netproxy/testenv"
	"github.com/google/renameio/v2"
)

// ContainersConf is the project's containers.conf, which every harness
// service runs with (CONTAINERS_CONF).
//
//go:embed containers.conf
var ContainersConf []byte

// Image is the busybox image every harness service has: busybox and its
// applets in /bin, PATH=/bin. It is built offline by `podman import`.
const Image = "localhost/cuelet-busybox:latest"

// Busybox is the static busybox the image is made from.
var Busybox = "/bin/busybox"

// Podman is one running, isolated podman service.
type Podman struct {
	// URL is the service's socket, unix://<dir>/podman.sock.
	URL string
	// Dir holds everything of this service; it is removed by Close.
	Dir string
	// Subnet and Bridge are the default network of this service; the
	// network has the bridge's name.
	Subnet netip.Prefix
	Bridge string

	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // by StopService
	slot    *os.File
	env     []string

	closeOnce sync.Once
	closeErr  error
}

// Available reports why podman end-to-end tests cannot run here, or nil.
func Available() error {
	if _, err := exec.LookPath("podman"); err != nil {
		return fmt.Errorf("podman not installed: %w", err)
	}
	if err := testenv.Root(); err != nil {
		return fmt.Errorf("rootful podman: %w", err)
	}
	if _, err := os.Stat(Busybox); err != nil {
		return fmt.Errorf("busybox for the test image: %w", err)
	}
	return nil
}

// Require skips the test when podman cannot run here, or fails it when CI
// is set (testenv.Require).
func Require(tb testing.TB) {
	tb.Helper()
	testenv.Require(tb, Available())
}

// New starts a podman service for one test (see Require for when it skips)
// and removes it when the test ends.
func New(tb testing.TB) *Podman {
	tb.Helper()
	Require(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := Start(ctx)
	if err != nil {
		tb.Fatalf("start podman: %v", err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("stop podman: %v", err)
		}
	})
	return p
}

// Start starts a podman service, waits until it answers and builds Image.
// Close it when done.
func Start(ctx context.Context) (p *Podman, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	reapStale()
	// A short path: the socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	// Written whole or not at all: another test binary's reapStale that
	// read an empty owner file (created, not yet written) took the dir
	// for a dead one and removed it under us.
	if err := renameio.WriteFile(filepath.Join(dir, ownerFile), []byte(processID(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p = &Podman{Dir: dir, URL: "unix://" + filepath.Join(dir, "podman.sock")}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	for _, d := range []string{"root", "runroot", "tmp", "networks", "xdg"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return p, err
		}
	}
	if err := p.claimNetwork(); err != nil {
		return p, err
	}
	// The project's file plus this service's default network: netavark
	// names its firewall chains after the network, so services that share
	// a network name tear down each other's rules.
	conf := filepath.Join(dir, "containers.conf")
	content := fmt.Sprintf("%s\n[network]\ndefault_network = %q\n", ContainersConf, p.Bridge)
	if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
		return p, err
	}
	p.env = append(os.Environ(), "CONTAINERS_CONF="+conf, "XDG_RUNTIME_DIR="+filepath.Join(dir, "xdg"))
	p.env = slicesDeleteEnv(p.env, "CONTAINER_HOST", "CONTAINER_CONNECTION")

	if err := p.startService(ctx); err != nil {
		return p, err
	}
	if err := p.buildImage(ctx); err != nil {
		return p, fmt.Errorf("build %s: %w", Image, err)
	}
	return p, nil
}

// startService starts `podman system service` on p.URL and waits until it
// answers.
func (p *Podman) startService(ctx context.Context) error {
	log, err := os.OpenFile(filepath.Join(p.Dir, "service.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	args := append(p.globalArgs(), "system", "service", "--time", "0", p.URL)
	cmd := exec.Command("podman", args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = log, log
	// The service dies with the test binary, even on a crash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start podman system service: %w", err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	return p.waitReady(ctx)
}

// StopService stops the podman service process only, the way a podman
// upgrade or `systemctl stop podman` does: containers keep running under
// their conmon, and the socket stops answering. StartService brings it
// back on the same storage; Close works in either state.
func (p *Podman) StopService() error {
	p.stopped = true
	p.terminate()
	// The service removes its socket on a clean exit; make sure nothing
	// answers (or accepts) on the old path.
	if err := os.Remove(p.socketPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// terminate stops the service process: SIGTERM, and SIGKILL if it has not
// exited within 10 s.
func (p *Podman) terminate() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// CrashService kills the service process with SIGKILL, as the OOM killer
// or a crash does: containers keep running under their conmon, the socket
// file stays and refuses connections. StartService brings the service back
// (podman replaces the stale socket); Close works in either state.
func (p *Podman) CrashService() error {
	p.stopped = true
	if err := p.cmd.Process.Kill(); err != nil {
		return err
	}
	<-p.exited
	return nil
}

// PauseService freezes the service process (SIGSTOP): the socket still
// accepts connections but nothing answers, as with a podman that hangs.
// ResumeService thaws it; call it before Close.
func (p *Podman) PauseService() error { return p.cmd.Process.Signal(syscall.SIGSTOP) }

// ServicePID is the process ID of the podman service, for benchmarks that
// follow what it runs (netavark, conmon, runc).
func (p *Podman) ServicePID() int { return p.cmd.Process.Pid }

// ResumeService undoes PauseService.
func (p *Podman) ResumeService() error { return p.cmd.Process.Signal(syscall.SIGCONT) }

// StartService starts the service again after StopService.
func (p *Podman) StartService(ctx context.Context) error {
	select {
	case <-p.exited:
	default:
		return errors.New("podman service still running")
	}
	p.stopped = false
	return p.startService(ctx)
}

func slicesDeleteEnv(env []string, keys ...string) []string {
	out := env[:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, d := range keys {
			if k == d {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// globalArgs isolate every podman command of this service, the exit
// commands that conmon runs included (podman passes them on).
func (p *Podman) globalArgs() []string {
	return []string{
		"--root", filepath.Join(p.Dir, "root"),
		"--runroot", filepath.Join(p.Dir, "runroot"),
		"--tmpdir", filepath.Join(p.Dir, "tmp"),
		"--network-config-dir", filepath.Join(p.Dir, "networks"),
		"--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
		"--runtime", "runc",
		"--log-level", "warning",
	}
}

// claimNetwork takes a free slot (a lock file held until Close) and gives
// the service a default network of its own: network and bridge cuelet-t<N>,
// subnet 10.201.<N>.0/24, so that services of parallel test binaries never
// share a bridge, addresses or firewall chains.
func (p *Podman) claimNetwork() error {
	lockDir := filepath.Join(os.TempDir(), "cuelet-podmantest")
	used := usedPrefixes()
	for n := 0; n < 250; n++ {
		subnet := netip.MustParsePrefix(fmt.Sprintf("10.201.%d.0/24", n))
		bridge := "cuelet-t" + strconv.Itoa(n)
		if owner, ok := used[subnet]; ok && owner != bridge {
			continue
		}
		f, err := slotlock.Take(lockDir, n)
		if err != nil {
			return err
		}
		if f == nil {
			continue // another test holds it
		}
		p.slot, p.Subnet, p.Bridge = f, subnet, bridge
		// A crashed run may have left the slot's bridge and rules.
		if err := removeNetworkLeftovers(subnet.String(), bridge); err != nil {
			return err
		}
		gw := subnet.Addr().Next()
		conf := fmt.Sprintf(`{
  "name": %q,
  "id": "%064x",
  "driver": "bridge",
  "network_interface": %q,
  "subnets": [{"subnet": %q, "gateway": %q}],
  "ipv6_enabled": false,
  "internal": false,
  "dns_enabled": false,
  "ipam_options": {"driver": "host-local"}
}
`, bridge, n+1, bridge, subnet.String(), gw.String())
		return os.WriteFile(filepath.Join(p.Dir, "networks", bridge+".json"), []byte(conf), 0o644)
	}
	return errors.New("no free test network slot (10.201.0-249.0/24)")
}

// usedPrefixes maps the /24s that host interfaces already use to their
// interface names.
func usedPrefixes() map[netip.Prefix]string {
	out := map[netip.Prefix]string{}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip, ok := netip.AddrFromSlice(ipn.IP.To4()); ok && ipn.IP.To4() != nil {
				pre, _ := ip.Prefix(24)
				out[pre] = ifc.Name
			}
		}
	}
	return out
}

func (p *Podman) socketPath() string { return strings.TrimPrefix(p.URL, "unix://") }

// waitReady polls the service's /_ping until it answers.
func (p *Podman) waitReady(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.socketPath())
		},
	}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		resp, err := client.Get("http://d/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("podman service did not answer on %s: %w; log:\n%s", p.URL, ctx.Err(), p.log())
		case <-p.exited:
			return fmt.Errorf("podman service exited; log:\n%s", p.log())
		case <-t.C:
		}
	}
}

func (p *Podman) log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "service.log"))
	return string(b)
}

// Run runs the podman CLI against this service and returns its stdout.
func (p *Podman) Run(ctx context.Context, args ...string) (string, error) {
	return p.run(ctx, nil, args...)
}

func (p *Podman) run(ctx context.Context, stdin []byte, args ...string) (string, error) {
	return p.podman(ctx, stdin, []string{"--url", p.URL}, args)
}

// runLocal runs podman on this service's storage without the service.
func (p *Podman) runLocal(ctx context.Context, stdin []byte, args ...string) (string, error) {
	return p.podman(ctx, stdin, p.globalArgs(), args)
}

func (p *Podman) podman(ctx context.Context, stdin []byte, global, args []string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", append(global, args...)...)
	cmd.Env = p.env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// buildImage imports a busybox root file system as Image.
func (p *Podman) buildImage(ctx context.Context) error {
	rootfs, err := busyboxTar()
	if err != nil {
		return err
	}
	_, err = p.run(ctx, rootfs, "import", "--change", "ENV PATH=/bin", "-", Image)
	return err
}

func busyboxTar() ([]byte, error) {
	bin, err := os.ReadFile(Busybox)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(Busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Unix(0, 0)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: now})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: now}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "root", "run", "sys", "var", "www"} {
		if err := dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := dir("tmp", 0o1777); err != nil {
		return nil, err
	}
	if err := file("bin/busybox", 0o755, bin); err != nil {
		return nil, err
	}
	if err := file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")); err != nil {
		return nil, err
	}
	if err := file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")); err != nil {
		return nil, err
	}
	for _, a := range applets {
		if a == "busybox" {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: now}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Close stops every container of the service, stops the service, unmounts
// what it left mounted and removes its dirs. Calling it again does nothing.
func (p *Podman) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.close() })
	return p.closeErr
}

func (p *Podman) close() error {
	var errs []error
	if p.cmd != nil && p.cmd.Process != nil {
		// Generous: at a load of 60 and more on two cores, removing a
		// dozen pods took longer than a minute.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		// With the service stopped (StopService) the containers still
		// run: remove them with podman itself on the same storage. A
		// service that died otherwise (reaped) left nothing to remove.
		var run func(context.Context, []byte, ...string) (string, error)
		select {
		case <-p.exited:
			if p.stopped {
				run = p.runLocal
			}
		default:
			p.cmd.Process.Signal(syscall.SIGCONT) // in case a test paused it
			run = p.run
		}
		if run != nil {
			if _, err := run(ctx, nil, "pod", "rm", "--all", "--force", "--time", "0"); err != nil {
				errs = append(errs, err)
			}
			if _, err := run(ctx, nil, "rm", "--all", "--force", "--time", "0"); err != nil {
				errs = append(errs, err)
			}
		}
		cancel()
		p.terminate()
	}
	// conmon and exit commands of this service outlive it if containers
	// were left running; they are ours (their command line names our dir).
	killProcessesUsing(p.Dir)
	if err := unmountBelow(p.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		errs = append(errs, err)
	}
	if p.slot != nil {
		if err := removeNetworkLeftovers(p.Subnet.String(), p.Bridge); err != nil {
			errs = append(errs, err)
		}
		p.slot.Close()
	}
	return errors.Join(errs...)
}

const (
	dirPrefix = "cuelet-podman-"
	ownerFile = "owner" // the test process: PID and start time
)

// processID names a live process in a way that survives PID reuse.
func processID(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// Field 22 is the start time; the command (field 2) may hold spaces,
	// so count from its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return strconv.Itoa(pid) + " " + f[19]
}

// reapStale removes what services of test processes that died without
// Close (killed by a timeout, say) left behind: their containers' conmon
// and processes, mounts and dirs, so their addresses are free again.
func reapStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		owner, err := os.ReadFile(filepath.Join(dir, ownerFile))
		pid, _, _ := strings.Cut(string(owner), " ")
		n, perr := strconv.Atoi(pid)
		if err != nil || perr != nil {
			// Being set up right now, or left by a harness too old to
			// write an owner file (or one that wrote it in place).
			if st, serr := os.Stat(dir); serr != nil || time.Since(st.ModTime()) < 10*time.Minute {
				continue
			}
		} else if processID(n) == string(owner) {
			continue // its test process still runs
		}
		killProcessesUsing(dir)
		unmountBelow(dir)
		os.RemoveAll(dir)
	}
}

// killProcessesUsing SIGKILLs the processes whose command line names dir:
// only processes that this harness's service started carry its unique
// temporary dir.
func killProcessesUsing(dir string) {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte(dir+"/")) || bytes.Contains(b, append([]byte(dir), 0)) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountBelow lazily unmounts every mount point below dir, deepest first.
func unmountBelow(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
