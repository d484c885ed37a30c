package reconcile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cuelet/cuelet/manifests"
	"github.com/cuelet/cuelet/reconcile/svcenv"
)

// writeFileAtomic replaces path with data: temp file, fsync, rename, so a
// reader (inside a container, through the mounted folder) sees the old or
// the new content, never a part. It does nothing when the content is
// already there, so a no-op pass writes nothing.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename this finds nothing
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// envFile is the content of services.env: sorted KEY=VALUE lines.
func envFile(serviceEnv []string) []byte {
	lines := append([]string(nil), serviceEnv...)
	sort.Strings(lines)
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// writeEnvFile keeps <run-dir>/pods/<replica>/services.env current.
func writeEnvFile(runDir, replica string, serviceEnv []string) error {
	dir := podDir(runDir, replica)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, svcenv.FileName), envFile(serviceEnv), 0o644); err != nil {
		return fmt.Errorf("write env file: %w", err)
	}
	return nil
}

// syncFiles makes dir hold exactly the given files. Names are single path
// elements; anything else would escape the folder.
func syncFiles(dir string, files map[string]string) error {
	for name := range files {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			return fmt.Errorf("file name %q: must be a plain file name", name)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := writeFileAtomic(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write file %q: %w", name, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// prepareReplica writes what a replica's containers mount from the run dir:
// the env file and the files volumes.
func prepareReplica(runDir, replica string, volumes []manifests.Volume, serviceEnv []string) error {
	if err := writeEnvFile(runDir, replica, serviceEnv); err != nil {
		return err
	}
	for _, v := range volumes {
		if v.Files == nil {
			continue
		}
		if err := syncFiles(filesDir(runDir, replica, v.Name), v.Files); err != nil {
			return fmt.Errorf("files volume %q: %w", v.Name, err)
		}
	}
	return nil
}

// removeReplicaDirs deletes what cuelet kept for a removed replica.
func removeReplicaDirs(runDir, replica string) error {
	if err := os.RemoveAll(podDir(runDir, replica)); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(runDir, "files", replica))
}

// removeStaleDirs removes the replica folders below pods/ and files/ of the
// run dir whose replica is not in keep.
func removeStaleDirs(runDir string, keep map[string]bool) error {
	var errs []error
	for _, sub := range []string{"pods", "files"} {
		entries, err := os.ReadDir(filepath.Join(runDir, sub))
		if err != nil {
			if !os.IsNotExist(err) {
				errs = append(errs, err)
			}
			continue
		}
		for _, e := range entries {
			if !keep[e.Name()] {
				if err := os.RemoveAll(filepath.Join(runDir, sub, e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}
