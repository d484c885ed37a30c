package gitsource

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

func TestACraftedTreeCannotWriteOutsideTheCheckout(t *testing.T) {
	st := memory.NewStorage()
	blob := st.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	w, err := blob.Writer()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("pods: {}\n"))
	w.Close()
	blobHash, err := st.SetEncodedObject(blob)
	if err != nil {
		t.Fatal(err)
	}
	tree := &object.Tree{Entries: []object.TreeEntry{{Name: "../evil.cue", Mode: filemode.Regular, Hash: blobHash}}}
	obj := st.NewEncodedObject()
	if err := tree.Encode(obj); err != nil {
		t.Fatal(err)
	}
	treeHash, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	tree, err = object.GetTree(st, treeHash)
	if err != nil {
		t.Fatal(err)
	}

	parent := t.TempDir()
	dir := filepath.Join(parent, "rev")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// go-git's tree walker refuses the name; this test keeps it so.
	err = checkout(st, tree, dir, prevFiles{})
	if err == nil || !strings.Contains(err.Error(), "..") {
		t.Fatalf("checkout: %v, want it refused", err)
	}
	if _, err := os.Stat(filepath.Join(parent, "evil.cue")); !os.IsNotExist(err) {
		t.Fatalf("a file was written outside the checkout (%v)", err)
	}
}
