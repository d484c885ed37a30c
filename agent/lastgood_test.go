package agent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLastGood_save_get_forget(t *testing.T) {
	state := t.TempDir()
	l := NewLastGood(state)
	if _, ok, err := l.Get("web.cue"); ok || err != nil {
		t.Fatalf("Get before Save: ok=%v err=%v", ok, err)
	}
	files := map[string][]byte{"web.cue": []byte("pods: web: {}\n")}
	if err := l.Save("web.cue", files); err != nil {
		t.Fatal(err)
	}
	if err := l.Save("team:billing", map[string][]byte{"team/a.cue": []byte("package billing\n")}); err != nil {
		t.Fatal(err)
	}
	// A new LastGood on the same dir (an agent restart) sees it.
	got, ok, err := NewLastGood(state).Get("web.cue")
	if err != nil || !ok || string(got["web.cue"]) != "pods: web: {}\n" {
		t.Fatalf("Get after restart = %q ok=%v err=%v", got, ok, err)
	}
	if err := l.Forget(map[string]bool{"team:billing": true}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := l.Get("web.cue"); ok {
		t.Fatal("web.cue kept after Forget")
	}
	if _, ok, _ := l.Get("team:billing"); !ok {
		t.Fatal("team:billing forgotten although kept")
	}
}

func TestLastGood_unchanged_content_is_not_rewritten(t *testing.T) {
	l := NewLastGood(t.TempDir())
	files := map[string][]byte{"a.cue": []byte("x: 1\n")}
	if err := l.Save("a.cue", files); err != nil {
		t.Fatal(err)
	}
	p := l.path("a.cue")
	before, _ := os.Stat(p)
	if err := l.Save("a.cue", files); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if !os.SameFile(before, after) {
		t.Fatal("file replaced although content is the same")
	}
}

func TestLastGood_damaged_file_is_an_error(t *testing.T) {
	l := NewLastGood(t.TempDir())
	if err := l.Save("a.cue", map[string][]byte{"a.cue": nil}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.path("a.cue"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Get("a.cue"); err == nil {
		t.Fatalf("no error for a damaged file in %s", filepath.Dir(l.path("a.cue")))
	}
}

func TestLastGood_forget_lists_the_folder_again_only_after_a_save_of_a_unit_it_did_not_keep(t *testing.T) {
	state := t.TempDir()
	l := NewLastGood(state)
	files := map[string][]byte{"a.cue": []byte("x: 1\n")}
	ab := map[string]bool{"a.cue": true, "b.cue": true}
	for _, id := range []string{"a.cue", "b.cue"} {
		if err := l.Save(id, files); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Forget(ab); err != nil {
		t.Fatal(err)
	}
	// A file the agent did not write (an older agent's) is not seen by
	// a Forget with the same set: nothing of this process could be there.
	stray := filepath.Join(state, "lastgood", "stray.json")
	if err := os.WriteFile(stray, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Forget(ab); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); err != nil {
		t.Fatalf("a Forget with the same set listed the folder: %v", err)
	}
	// c is saved (a pass that then failed to apply), then goes: the same
	// set as before, but c's file must go.
	if err := l.Save("c.cue", files); err != nil {
		t.Fatal(err)
	}
	if err := l.Forget(ab); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := l.Get("c.cue"); ok {
		t.Fatal("c.cue kept after Forget")
	}
	if _, ok, _ := l.Get("a.cue"); !ok {
		t.Fatal("a.cue forgotten although kept")
	}
}
