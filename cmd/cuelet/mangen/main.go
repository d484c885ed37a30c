// Command mangen writes cuelet's man pages, one per command, from the
// command tree itself, so that they say what `cuelet help` says. `make man`
// runs it; `make install` installs what it wrote.
//
//	go run ./cmd/cuelet/mangen DIR
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"

	"github.com/cuelet/cuelet/cmd/cuelet/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mangen DIR")
		os.Exit(2)
	}
	date, err := buildDate(os.Getenv("SOURCE_DATE_EPOCH"))
	if err == nil {
		err = write(os.Args[1], date)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mangen: %v\n", err)
		os.Exit(1)
	}
}

// buildDate is $SOURCE_DATE_EPOCH when set, so that a package build is
// reproducible, else now.
func buildDate(epoch string) (time.Time, error) {
	if epoch == "" {
		return time.Now().UTC(), nil
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", epoch, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// write puts cuelet.1 and cuelet-COMMAND.1 (cuelet-completion-bash.1 for
// a command's own commands) into dir.
func write(dir string, date time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The defaults a page shows are those of a service: no $CONTAINER_HOST
	// and no terminal, whatever the machine that builds the pages has.
	env := &cli.Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	root := cli.NewCommand(env)
	root.DisableAutoGenTag = true
	escapeTree(root)
	header := &doc.GenManHeader{
		Title:   "CUELET",
		Section: "1",
		Date:    &date,
		Source:  "cuelet " + root.Version,
		Manual:  "cuelet manual",
	}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("write man pages: %w", err)
	}
	return troffGlyphs(dir)
}

// glyphs are the characters of the help text beyond ASCII, as troff names
// them: groff reads its input as Latin-1, so UTF-8 bytes would print as
// garbage ("old → new" in plan's help).
var glyphs = strings.NewReplacer("→", `\(->`, "×", `\(mu`, "…", "...", "—", `\(em`, "–", `\(en`, "§", `\(sc`)

// troffGlyphs rewrites the pages in dir with glyphs.
func troffGlyphs(dir string) error {
	pages, err := filepath.Glob(filepath.Join(dir, "*.1"))
	if err != nil {
		return err
	}
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			return err
		}
		if err := os.WriteFile(page, []byte(glyphs.Replace(string(b))), 0o644); err != nil {
			return fmt.Errorf("write man pages: %w", err)
		}
	}
	return nil
}

// markdown escapes what cobra/doc would otherwise read as markdown or HTML
// in plain help text: it renders a page from markdown, and "<run-dir>" or
// "--git-*" would vanish or turn into emphasis.
var markdown = strings.NewReplacer(`\`, `\\`, "<", `\<`, ">", `\>`, "*", `\*`, "_", `\_`)

// escapeTree escapes the text of every command and flag of a tree built
// for the pages alone.
func escapeTree(c *cobra.Command) {
	c.Short = markdown.Replace(c.Short)
	c.Long = markdown.Replace(c.Long)
	c.Flags().VisitAll(func(f *pflag.Flag) { f.Usage = markdown.Replace(f.Usage) })
	for _, sub := range c.Commands() {
		escapeTree(sub)
	}
}
