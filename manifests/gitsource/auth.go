package gitsource

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// tokenUser is the user name sent with a bare token. GitHub, GitLab and
// Gitea take any non-empty name with a personal access token as password.
const tokenUser = "x-access-token"

// auth builds the credentials the URL's protocol needs from the files the
// config names. It reads them at every fetch: a rotated token or key
// needs no restart.
func (s *Source) auth() (transport.AuthMethod, error) {
	ep, err := transport.NewEndpoint(s.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	switch ep.Protocol {
	case "http", "https":
		if s.cfg.CredentialsFile == "" {
			return nil, nil
		}
		b, err := os.ReadFile(s.cfg.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		user, token, err := parseCredentials(string(b))
		if err != nil {
			return nil, fmt.Errorf("credentials %s: %w", s.cfg.CredentialsFile, err)
		}
		return &http.BasicAuth{Username: user, Password: token}, nil
	case "ssh":
		if s.cfg.SSHKey == "" {
			return nil, nil // go-git falls back to the ssh agent
		}
		user := ep.User
		if user == "" {
			user = "git"
		}
		keys, err := ssh.NewPublicKeysFromFile(user, s.cfg.SSHKey, "")
		if err != nil {
			return nil, fmt.Errorf("ssh key %s: %w", s.cfg.SSHKey, err)
		}
		if s.cfg.KnownHosts != "" {
			cb, err := ssh.NewKnownHostsCallback(s.cfg.KnownHosts)
			if err != nil {
				return nil, fmt.Errorf("known hosts %s: %w", s.cfg.KnownHosts, err)
			}
			keys.HostKeyCallback = cb
		}
		return keys, nil
	}
	return nil, nil
}

// parseCredentials reads the first non-empty line of a credentials file:
// TOKEN, USER:TOKEN, or git's credential-store form
// https://USER:TOKEN@HOST.
func parseCredentials(content string) (user, token string, err error) {
	var line string
	for l := range strings.Lines(content) {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			line = l
			break
		}
	}
	switch {
	case line == "":
		return "", "", fmt.Errorf("no token in it")
	case strings.Contains(line, "://"):
		u, err := url.Parse(line)
		if err != nil || u.User == nil {
			return "", "", fmt.Errorf("want https://USER:TOKEN@HOST")
		}
		pw, ok := u.User.Password()
		if !ok || pw == "" {
			return "", "", fmt.Errorf("no token in its URL")
		}
		return u.User.Username(), pw, nil
	}
	if u, t, ok := strings.Cut(line, ":"); ok && u != "" && t != "" {
		return u, t, nil
	}
	return tokenUser, line, nil
}
