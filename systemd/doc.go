// Package systemd holds cuelet's systemd unit and tmpfiles.d entry, with
// tests that they say what SPEC §5 promises and that systemd accepts them,
// and the log writer that gives the journal each event's priority.
package systemd
