package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cuelet/cuelet/cmd/cuelet/cli"
)

// Every command a user can run has its page, named as man(1) and
// systemd's Documentation=man:cuelet(1) look it up, with its summary,
// synopsis and every flag; help text survives the markdown cobra/doc
// renders pages from.
func TestWrite_gives_every_command_a_page_with_its_flags(t *testing.T) {
	dir := t.TempDir()
	date := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	if err := write(dir, date); err != nil {
		t.Fatal(err)
	}
	root := cli.NewCommand(&cli.Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }})
	var pages []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.HasParent() {
			return
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-")
		pages = append(pages, name+".1")
		b, err := os.ReadFile(filepath.Join(dir, name+".1"))
		if err != nil {
			t.Errorf("%s: %v", c.CommandPath(), err)
			return
		}
		page := string(b)
		for _, want := range []string{`.TH "CUELET" "1" "Dec 2026" "cuelet `, ".SH NAME\n" + name + " - ", ".SH SYNOPSIS", ".SH DESCRIPTION"} {
			if !strings.Contains(page, want) {
				t.Errorf("%s.1 lacks %q", name, want)
			}
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if want := `\fB--` + f.Name + `\fP`; !f.Hidden && !strings.Contains(page, want) {
				t.Errorf("%s.1 lacks the flag --%s", name, f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, want := range []string{"cuelet.1", "cuelet-validate.1", "cuelet-plan.1", "cuelet-run.1", "cuelet-status.1", "cuelet-version.1", "cuelet-completion-bash.1"} {
		if !contains(pages, want) {
			t.Errorf("no page %s among %q", want, pages)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(pages) {
		t.Errorf("%d files in the folder, want one per command: %q", len(entries), pages)
	}

	validate, err := os.ReadFile(filepath.Join(dir, "cuelet-validate.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(validate), `<service>\&.svc.<domain>`) {
		t.Errorf("cuelet-validate.1 lost the <service> and <domain> of --cluster-domain's help:\n%s", validate)
	}

	// groff, where installed, reads every page without a warning.
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("no groff: pages not rendered")
		return
	}
	args := append([]string{"-man", "-Tutf8", "-ww", "-z"}, filepath.Join(dir, "*.1"))
	out, err := exec.Command("sh", "-c", groff+" "+strings.Join(args, " ")).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("groff: %v\n%s", err, out)
	}
}

func TestBuildDate_is_SOURCE_DATE_EPOCH_when_set(t *testing.T) {
	got, err := buildDate("1790000000")
	if err != nil || !got.Equal(time.Unix(1790000000, 0)) {
		t.Errorf("buildDate = %v, %v", got, err)
	}
	if _, err := buildDate("soon"); err == nil {
		t.Error("buildDate(\"soon\"): no error")
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
