package gitsource

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestSSHWithAKeyAndKnownHosts(t *testing.T) {
	up := newUpstream(t)
	head := up.Commit(t, "over ssh", map[string]string{"web.cue": "a\n"})
	dir := t.TempDir()
	clientKey := writeSSHKey(t, filepath.Join(dir, "id_ed25519"))
	writeSSHKey(t, filepath.Join(dir, "other"))
	addr, hostKey := sshGitServer(t, filepath.Dir(up.Bare), clientKey)
	_, wrongHost, _ := ed25519.GenerateKey(rand.Reader)
	wrongHostKey, err := ssh.NewSignerFromKey(wrongHost)
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(dir, "known_hosts")
	write(t, known, knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostKey)+"\n")
	unknown := filepath.Join(dir, "unknown_hosts")
	write(t, unknown, knownhosts.Line([]string{knownhosts.Normalize(addr)}, wrongHostKey.PublicKey())+"\n")
	url := "ssh://git@" + addr + "/" + filepath.Base(up.Bare)

	s := newSource(t, Config{URL: url, SSHKey: filepath.Join(dir, "id_ed25519"), KnownHosts: known})
	mustSync(t, s, head)
	wantFiles(t, s.ManifestDir(), map[string]string{"web.cue": "a\n"})

	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"a host key that known_hosts does not hold", Config{URL: url, SSHKey: filepath.Join(dir, "id_ed25519"), KnownHosts: unknown}, "key mismatch"},
		{"a key the server does not take", Config{URL: url, SSHKey: filepath.Join(dir, "other"), KnownHosts: known}, "unable to authenticate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := newSource(t, tc.cfg).Sync(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sync: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// writeSSHKey writes a new private key in OpenSSH's format and returns
// its public half.
func writeSSHKey(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, string(pem.EncodeToMemory(block)))
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer.PublicKey()
}

// sshGitServer serves git-upload-pack for the repositories under root
// over ssh on 127.0.0.1, to the holder of client's key only, as a git
// host does.
func sshGitServer(t *testing.T, root string, client ssh.PublicKey) (addr string, hostKey ssh.PublicKey) {
	t.Helper()
	if _, err := exec.LookPath("git-upload-pack"); err != nil {
		t.Skip("git-upload-pack not installed")
	}
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	host, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) != string(client.Marshal()) {
				return nil, errors.New("unknown key")
			}
			return nil, nil
		},
	}
	cfg.AddHostKey(host)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveSSHConn(c, cfg, root)
		}
	}()
	return ln.Addr().String(), host.PublicKey()
}

func serveSSHConn(c net.Conn, cfg *ssh.ServerConfig, root string) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range chReqs {
				if req.Type != "exec" || len(req.Payload) < 4 {
					req.Reply(false, nil)
					continue
				}
				n := binary.BigEndian.Uint32(req.Payload)
				prog, arg, _ := strings.Cut(string(req.Payload[4:4+n]), " ")
				if prog != "git-upload-pack" {
					req.Reply(false, nil)
					continue
				}
				req.Reply(true, nil)
				repo := filepath.Join(root, filepath.Clean("/"+strings.Trim(arg, "'")))
				cmd := exec.Command("git-upload-pack", repo)
				cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
				code := uint32(0)
				if err := cmd.Run(); err != nil {
					code = 1
				}
				status := binary.BigEndian.AppendUint32(nil, code)
				ch.SendRequest("exit-status", false, status)
				return
			}
		}()
	}
}
