// Package portal hands out portal IPs (a service's stable virtual address)
// from the portal range, as a pure Plan and an Allocator that keeps the
// allocations in a state file, stable across restarts and edits; the rules
// are in docs/design.md.
package portal
