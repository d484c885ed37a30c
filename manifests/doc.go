// Package manifests finds the units in a manifest directory, loads and
// validates them against the schema, and decodes them into typed values
// with every default applied.
//
// Load (for files and folders named by a user, as `cuelet validate` does)
// and LoadDir (for the agent's manifest directory, names relative to it)
// return every unit found, valid or not: a unit with Problems is invalid as
// a whole and has no Pods or Services. They fail only when a root cannot be
// read at all. Both end with CheckCrossUnit; the agent, which keeps the
// last known good version of units that became invalid, can run
// CrossUnitProblems or CheckCrossUnit again on the set it means to apply.
package manifests
