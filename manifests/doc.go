// Package manifests finds the units in a manifest directory, loads and
// validates them against the schema, and decodes them into typed values
// with every default applied.
package manifests
