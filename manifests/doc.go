// Package manifests finds the units of a manifest directory, validates them
// against the schema and the cross-unit and node rules, and decodes the
// valid ones into typed values with every default applied. The format it
// reads is docs/manifests.md.
package manifests
